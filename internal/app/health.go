package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/regcache/regcache/internal/upstream"
)

// Upstream states, as /status, the dashboard, `regcache status` and
// regcache_upstream_state (with _ for -) name them.
const (
	stateUnknown      = "unknown"       // not probed yet, no request answered
	stateUp           = "up"            //
	stateRateLimited  = "rate-limited"  // a 429 holds some kinds of request back
	stateBreakerOpen  = "breaker-open"  // an endpoint family (blobs, a CDN host) fails fast
	stateStaleServing = "stale-serving" // unreachable: content is served from the cache
)

// upstreamState words an upstream's health: the state, why, since when,
// and when it is probed next. The worst condition wins.
func upstreamState(h upstream.Health, now time.Time) (state, text, reason string, since, next time.Time) {
	p := h.Probe
	var registryBreaker, otherBreaker *upstream.BreakerState
	for i, b := range h.Breakers {
		if !b.Open {
			continue
		}
		if b.Scope == upstream.ScopeManifests || b.Scope == upstream.ScopeToken {
			if registryBreaker == nil {
				registryBreaker = &h.Breakers[i]
			}
		} else if otherBreaker == nil {
			otherBreaker = &h.Breakers[i]
		}
	}
	switch {
	case p.State == upstream.ProbeDown:
		return stateStaleServing, "unreachable, serving from cache", p.Reason, p.Since, p.NextProbe
	case registryBreaker != nil:
		b := registryBreaker
		return stateStaleServing, "failing (" + b.Scope + " breaker open), serving from cache", b.LastError, b.Since, b.NextProbe
	case otherBreaker != nil:
		b := otherBreaker
		return stateBreakerOpen, b.Scope + " breaker open", b.LastError, b.Since, b.NextProbe
	case !h.LimitedUntil.IsZero():
		var kinds []string
		for _, l := range h.Limited {
			kinds = append(kinds, l.Kind)
		}
		text = "rate-limited until " + h.LimitedUntil.UTC().Format("15:04:05 UTC")
		if left := h.LimitedUntil.Sub(now); left > 0 {
			text += " (" + left.Round(time.Second).String() + ")"
		}
		return stateRateLimited, text, "429 for " + strings.Join(kinds, ", "), time.Time{}, h.LimitedUntil
	case p.State == upstream.ProbeUnknown:
		return stateUnknown, "not probed yet", "", time.Time{}, p.NextProbe
	}
	return stateUp, "up", "", p.Since, p.NextProbe
}

// degradedStates are the states that make the mirror degraded.
func degradedState(state string) bool {
	return state == stateStaleServing || state == stateBreakerOpen || state == stateRateLimited
}

// degraded lists what is degraded, one sentence each; none when healthy.
func (a *App) degraded(st Status) []string {
	var out []string
	if err := a.store.Writable(context.Background()); err != nil {
		out = append(out, fmt.Sprintf("the cache directory is not writable, so nothing new is cached (hits and uncached pulls are still served): %v", err))
	}
	out = append(out, a.pinnedOverCap()...)
	for _, u := range st.Upstreams {
		if !degradedState(u.State) {
			continue
		}
		s := u.Name + ": " + u.StateText
		if u.Reason != "" {
			s += " (" + u.Reason + ")"
		}
		if !u.Since.IsZero() {
			s += " since " + u.Since.UTC().Format(time.RFC3339)
		}
		if !u.NextProbe.IsZero() {
			s += "; next probe " + u.NextProbe.UTC().Format(time.RFC3339)
		}
		out = append(out, s)
	}
	return out
}

// readyz answers 200 while the mirror can serve from its store, with a
// body that says what is degraded (an unreachable upstream, a read-only
// cache directory), and 503 when the store cannot be read.
func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := a.store.Readable(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: the cache store cannot be read: %v\n", err)
		return
	}
	st := a.Status()
	if len(st.Degraded) == 0 {
		fmt.Fprintln(w, "ok")
		return
	}
	fmt.Fprintln(w, "ready, degraded:")
	for _, d := range st.Degraded {
		fmt.Fprintln(w, "- "+d)
	}
}
