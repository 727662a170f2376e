package app

import (
	"slices"
	"strconv"

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
	a.upstreams.Seal(func(i int) bool { return running.Upstreams[i].Sealed || next.Sealed }, a.log)
	for _, u := range a.upstreams {
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
