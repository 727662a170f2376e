package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/policy"
)

// newPolicyCmd is `regcache policy`: the pull-time supply-chain policy.
func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check the pull-time supply-chain policy (docs/policy.md)",
	}
	cmd.AddCommand(newPolicyLintCmd())
	return cmd
}

// newPolicyLintCmd is `regcache policy lint FILE`.
func newPolicyLintCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lint FILE",
		Short: "Validate a policy file (or a configuration file's policy block): keys, patterns, keys' files",
		Long: `Validate a policy file: the policy block's keys at its top level, or a
configuration file with a policy: block. Every problem is named by its key
and line; the cosign public keys it names are read and parsed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := config.LoadPolicyFile(args[0])
			if err != nil {
				return err
			}
			set, err := policy.Compile(p)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if set == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: no policy (every digest is served)\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok: mode %s, %d rules\n", args[0], set.Mode(), len(p.Rules))
			return nil
		},
	}
}
