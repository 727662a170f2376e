package app

import (
	"fmt"
	"reflect"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/rules"
)

// ruleSet is the rules in effect (none before the content service is
// built).
func (a *App) ruleSet() *rules.Set {
	if a.content == nil {
		return nil
	}
	return a.content.Rules()
}

// ruleName names the rule that applies to a tag, for `cache ls`.
func (a *App) ruleName(upstream, repo, tag string) string {
	if r, ok := a.ruleSet().Match(upstream, repo, tag); ok {
		return r.String()
	}
	return ""
}

// reloadRules applies a changed rules list (SIGHUP): the content service
// swaps its set at once, so a request reads the old set or the new one,
// never a mix; eviction and `cache ls` read it from there.
func (a *App) reloadRules(running config.Config, eff *config.Config) error {
	if reflect.DeepEqual(running.Rules, eff.Rules) {
		return nil
	}
	set, err := rules.Compile(eff.Rules)
	if err != nil {
		eff.Rules = running.Rules
		return fmt.Errorf("rules: keeping the old rules: %w", err)
	}
	a.content.SetRules(set)
	return nil
}
