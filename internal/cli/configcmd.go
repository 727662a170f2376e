package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show the configuration serve would run with",
	}
	cmd.AddCommand(newConfigPrintCmd())
	return cmd
}

func newConfigPrintCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration and where each value came from",
		Long: `Print the configuration serve would start with, given the same flags,
REGCACHE_* (and Distribution's REGISTRY_*) variables and --config file:
every option's value, its source (flag, env, file or default) and what a
SIGHUP does with a change to it (applied live, or needs a restart), and the
upstreams. Secrets (the admin token, upstream passwords, the S3 secret key,
the cluster secret, the password inside cluster.redis) are redacted. The
configuration is checked as serve checks it: an error here is the error
serve would stop with.`,
		Example: `  regcache config print --config /etc/regcache/regcache.yaml
  REGCACHE_FRESHNESS=10m regcache config print --json | jq '.settings[] | select(.source != "default")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			settings, cfg, err := config.Explain(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			r := cfg.Redacted()
			type upstream struct {
				Name, URL, Auth string
				Aliases         []string `json:",omitempty"`
			}
			var ups []upstream
			for _, u := range r.Upstreams {
				ups = append(ups, upstream{Name: u.Name, URL: u.URL, Auth: authMode(u), Aliases: u.Aliases})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Settings  []config.Setting `json:"settings"`
					Upstreams []upstream       `json:"upstreams"`
					Users     int              `json:"usersWithPatterns"`
				}{settings, ups, len(r.Access.Users)})
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE\tON SIGHUP")
			for _, s := range settings {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Key, s.Value, s.Source, s.Reload)
			}
			tw.Flush()
			fmt.Fprintln(out, "\nupstreams (the first is the default, served at the root):")
			for _, u := range ups {
				extra := ""
				if len(u.Aliases) > 0 {
					extra = ", aliases " + strings.Join(u.Aliases, ", ")
				}
				fmt.Fprintf(out, "  %s  %s  (%s%s)\n", u.Name, u.URL, u.Auth, extra)
			}
			if n := len(r.Access.Users); n > 0 {
				fmt.Fprintf(out, "access.users: repository patterns for %d users\n", n)
			}
			if p := r.Policy; p.Enabled() {
				mode := p.Mode
				if mode == "" {
					mode = "enforce"
				}
				fmt.Fprintf(out, "policy: %s mode, %d rules (regcache policy lint checks it; docs/policy.md)\n", mode, len(p.Rules))
			}
			return nil
		},
	}
	config.RegisterFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
