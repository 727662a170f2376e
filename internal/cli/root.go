// Package cli holds regcache's command tree: serve, client, cache.
// Commands parse flags and build collaborators; the work lives in the
// concept packages under internal/.
package cli

import "github.com/spf13/cobra"

// NewRoot returns the regcache command with every subcommand attached.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "regcache",
		Short: "A pull-through caching mirror for Docker Hub and other OCI registries",
		Long: `regcache is a pull-through caching mirror for Docker Hub and other OCI
registries, and the tool that points dockerd, containerd and podman at it.

  regcache serve                      run the mirror (Docker Hub on :5000, cache in ./data)
  regcache client docker enable ...   point this node's dockerd at a mirror`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(flagError) // inherited by every subcommand
	root.AddCommand(newServeCmd(), newConfigCmd(), newClientCmd(), newStatusCmd(), newWarmCmd(), newCacheCmd(), newHealthcheckCmd(), newPolicyCmd(), newVersionCmd())
	return root
}
