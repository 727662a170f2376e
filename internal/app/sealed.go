package app

import (
	"log/slog"
	"slices"
	"strconv"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/config"
)

// reloadSealed applies changed upstreams[].sealed flags at once (SIGHUP):
// each upstream client is sealed or unsealed in place. running is given
// the new flags (on a copy of its list), so config.Reconcile does not take
// them for a change of the upstreams that needs a restart. When the list
// itself changed (upstreams added, removed or reordered), nothing is
// applied: that needs a restart anyway.
func (a *App) reloadSealed(running *config.Config, next config.Config) (reloaded []string) {
	if len(running.Upstreams) != len(next.Upstreams) || len(a.upstreams) != len(next.Upstreams) {
		return nil
	}
	for i, u := range next.Upstreams {
		if running.Upstreams[i].Name != u.Name {
			return nil
		}
	}
	running.Upstreams = slices.Clone(running.Upstreams)
	for i, u := range next.Upstreams {
		if running.Upstreams[i].Sealed == u.Sealed {
			continue
		}
		running.Upstreams[i].Sealed = u.Sealed
		a.upstreams[i].Client.SetSealed(u.Sealed)
		a.logSealed(u)
		reloaded = append(reloaded, "upstreams["+u.Name+"].sealed ("+strconv.FormatBool(u.Sealed)+")")
	}
	return reloaded
}

// sealedMisses are the sealed upstreams' misses, for `cache ls --missing`.
func (a *App) sealedMisses() []cache.Missed {
	out := []cache.Missed{}
	for _, u := range a.upstreams {
		misses, _ := u.Client.SealedMisses()
		for _, m := range misses {
			out = append(out, cache.Missed{Upstream: u.Name, Op: m.Op, Count: m.Count, Last: m.Last})
		}
	}
	return out
}

// logSealed says at start-up and on each change what a seal means.
func (a *App) logSealed(u config.Upstream) {
	if u.Sealed {
		a.log.Warn("upstream sealed: never contacted; cached content is served, misses are answered 404 and listed in /status",
			slog.String("upstream", u.Name))
		return
	}
	a.log.Info("upstream unsealed: pulls reach it again", slog.String("upstream", u.Name))
}
