package app

import (
	"log/slog"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/config"
)

// reloadSealed applies a changed seal at once (SIGHUP): sealed (every
// upstream) and upstreams[].sealed, each client sealed or unsealed in
// place. running is given the new upstreams[].sealed flags (on a copy of
// its list), so config.Reconcile does not take them for a change of the
// upstreams that needs a restart; the sealed option is live in the option
// table. When the list itself changed (upstreams added, removed or
// reordered), its flags wait for the restart that needs.
func (a *App) reloadSealed(running *config.Config, next config.Config) (reloaded []string) {
	same := len(running.Upstreams) == len(next.Upstreams)
	for i := 0; same && i < len(next.Upstreams); i++ {
		same = running.Upstreams[i].Name == next.Upstreams[i].Name
	}
	if same {
		running.Upstreams = slices.Clone(running.Upstreams)
		for i, u := range next.Upstreams {
			if running.Upstreams[i].Sealed != u.Sealed {
				running.Upstreams[i].Sealed = u.Sealed
				reloaded = append(reloaded, "upstreams["+u.Name+"].sealed ("+strconv.FormatBool(u.Sealed)+")")
			}
		}
	}
	for i, u := range a.upstreams {
		if want := running.Upstreams[i].Sealed || next.Sealed; u.Client.Sealed() != want {
			u.Client.SetSealed(want)
			a.logSealed(u.Name, want)
		}
		u.Client.SetSealedMissStatus(next.SealedMissStatus)
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

// registerSealedMetrics exports each upstream's refused requests.
func (a *App) registerSealedMetrics() {
	for _, u := range a.upstreams {
		c := u.Client
		a.metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_sealed_misses_total",
			Help: "Requests not sent to a sealed upstream (upstreams[].sealed, sealed): what the mirror would have fetched.", ConstLabels: prometheus.Labels{"upstream": u.Name}},
			func() float64 { _, n := c.SealedMisses(); return float64(n) }))
	}
}

// logSealed says at start-up and on each change what a seal means.
func (a *App) logSealed(name string, sealed bool) {
	if sealed {
		a.log.Warn("upstream sealed: never contacted; cached content is served, misses are answered 404 (or 503: sealed_miss_status) and listed in /status",
			slog.String("upstream", name))
		return
	}
	a.log.Info("upstream unsealed: pulls reach it again", slog.String("upstream", name))
}

// sealedMissStatus is sealed_miss_status as the upstream clients hold it.
func (a *App) sealedMissStatus() int {
	if len(a.upstreams) == 0 {
		return 404
	}
	return a.upstreams[0].Client.SealedMissStatus()
}

// allSealed is the sealed setting as the upstream clients hold it.
func (a *App) allSealed() bool {
	for _, u := range a.upstreams {
		if !u.Client.Sealed() {
			return false
		}
	}
	return len(a.upstreams) > 0
}
