package cli

import "github.com/spf13/cobra"

// newClientCmd is replaced by the client-configuration work (issue 6).
func newClientCmd() *cobra.Command {
	return &cobra.Command{Use: "client", Short: "Configure container engines to use a mirror"}
}
