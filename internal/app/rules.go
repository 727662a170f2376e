package app

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/rules"
)

// pinState is what the last eviction pass found of pinned images (rules
// with pin: true): their bytes, and whether they alone exceed the cap.
type pinState struct {
	bytes atomic.Int64
	over  atomic.Bool
}

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

// rulePolicy is what the rules ask of an eviction (cache.RulePolicy).
func (a *App) rulePolicy(ctx context.Context, rs *rules.Set) (map[digest.Digest]bool, map[digest.Digest]time.Duration, error) {
	return cache.RulePolicy(ctx, a.index, rs)
}

// notePins records what a pass found of pinned images, and says in the
// log, once each time it becomes so, that the cap cannot be met.
func (a *App) notePins(p cacheindex.Plan, maxSize int64) {
	a.pins.bytes.Store(p.PinnedBytes)
	over := maxSize > 0 && p.PinnedBytes > maxSize
	if was := a.pins.over.Swap(over); over && !was {
		a.log.Warn("pinned images alone exceed storage.max_size: they are kept, and the cap cannot be met",
			slog.Int64("pinned_bytes", p.PinnedBytes), slog.Int64("max_size", maxSize))
	} else if p.CapUnmet && !over {
		a.log.Warn("storage.max_size cannot be met without evicting pinned images: they are kept",
			slog.Int64("pinned_bytes", p.PinnedBytes), slog.Int64("max_size", maxSize), slog.Int64("stored_bytes", a.totals().Bytes()))
	}
}

// registerPinMetrics exports the pinned bytes.
func (a *App) registerPinMetrics() {
	a.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_pinned_bytes",
		Help: "Bytes of images pinned by rules (pin: true), as of the last eviction pass that was over the cap or had an age limit."},
		func() float64 { return float64(a.pins.bytes.Load()) }))
}
