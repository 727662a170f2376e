package cli

import (
	"fmt"
	"net/url"
	"os"

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
	cmd.AddCommand(newPolicyLintCmd(), newPolicyCheckCmd())
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

// policyAnswer is the admin listener's answer to /policy/check
// (mirror.PolicyAnswer).
type policyAnswer struct {
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	Tag        string `json:"tag"`
	Digest     string `json:"digest"`
	Decision   string `json:"decision"`
	Served     bool   `json:"served"`
	Mode       string `json:"mode"`
	Rule       string `json:"rule"`
	Reason     string `json:"reason"`
	Signer     string `json:"signer"`
}

// newPolicyCheckCmd is `regcache policy check IMAGE [--admin URL]`.
func newPolicyCheckCmd() *cobra.Command {
	var admin, token string
	cmd := &cobra.Command{
		Use:   "check IMAGE",
		Short: "Ask a running mirror what its pull policy decides for an image, and why, without pulling it",
		Long: `Ask a running mirror's admin listener what its pull policy decides for
IMAGE (as docker pull names it: alpine:3.20, ghcr.io/myorg/app@sha256:...):
the digest the tag resolves to, allow or deny, the rule and the reason,
the key that verified. Nothing is pulled, prefetched or logged as a pull.

Exit codes: 0 the mirror would serve it, 1 it would refuse it, 2 the
mirror did not answer.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if token == "" {
				token = os.Getenv("REGCACHE_ADMIN_TOKEN")
			}
			c, err := newRemoteCache(admin, token)
			if err != nil {
				return err
			}
			var ans policyAnswer
			if err := c.get(cmd.Context(), "GET", "/policy/check", url.Values{"image": {args[0]}}, nil, &ans); err != nil {
				return &ExitError{Code: exitUnreachable, Err: fmt.Errorf("policy check %s: %w", args[0], err)}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s/%s", ans.Upstream, ans.Repository)
			if ans.Tag != "" {
				fmt.Fprintf(w, ":%s", ans.Tag)
			}
			fmt.Fprintf(w, " -> %s\n%s", ans.Digest, ans.Decision)
			if ans.Rule != "" {
				fmt.Fprintf(w, " by %s", ans.Rule)
			}
			fmt.Fprintf(w, ": %s\n", ans.Reason)
			if ans.Signer != "" {
				fmt.Fprintf(w, "signed: %s\n", ans.Signer)
			}
			if ans.Decision != "allow" && ans.Served {
				fmt.Fprintln(w, "served anyway: the policy is in audit mode")
			}
			if !ans.Served {
				return &ExitError{Code: exitDegraded, Err: fmt.Errorf("the mirror would refuse %s", args[0])}
			}
			return nil
		},
	}
	def := os.Getenv("REGCACHE_ADMIN_ADDR")
	if def == "" {
		def = "127.0.0.1:5001"
	}
	cmd.Flags().StringVar(&admin, "admin", def, "admin listener of the mirror, host:port or URL (env REGCACHE_ADMIN_ADDR)")
	cmd.Flags().StringVar(&token, "admin-token", "", "the mirror's admin_token, from another host (env REGCACHE_ADMIN_TOKEN)")
	return cmd
}
