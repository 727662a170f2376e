package app

import (
	"fmt"
	"reflect"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/policy"
)

// reloadPolicy applies a changed pull policy (SIGHUP; a policy_file is
// read again by config.Load each time): the content service swaps it at
// once, and every digest is decided again at its next pull. A policy that
// does not compile (a key file gone) keeps the old one whole.
func (a *App) reloadPolicy(running config.Config, eff *config.Config) error {
	if reflect.DeepEqual(running.Policy, eff.Policy) && running.PolicyFile == eff.PolicyFile {
		return nil
	}
	set, err := policy.Compile(eff.Policy)
	if err != nil {
		eff.Policy, eff.PolicyFile = running.Policy, running.PolicyFile
		return fmt.Errorf("policy: keeping the old policy: %w", err)
	}
	a.content.SetPolicy(set)
	return nil
}

// policyStatus is the policy's part of /status: its mode and the recent
// denials.
func (a *App) policyStatus() *admin.PolicyStatus {
	set := a.content.Policy()
	if set == nil {
		return nil
	}
	return &admin.PolicyStatus{Mode: set.Mode(), Rules: len(set.Labels()) - 1, Denials: a.content.RecentDenials()}
}
