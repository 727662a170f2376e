package admin

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/upstream"
)

// Upstream states, as /status, the dashboard, `regcache status` and
// regcache_upstream_state (with _ for -) name them.
const (
	StateUnknown      = "unknown"       // not probed yet, no request answered
	StateUp           = "up"            //
	StateRateLimited  = "rate-limited"  // a 429 holds some kinds of request back
	StateBreakerOpen  = "breaker-open"  // an endpoint family (blobs, a CDN host) fails fast
	StateStaleServing = "stale-serving" // unreachable: content is served from the cache
	// The upstream refuses the configured credentials: every pull through
	// it fails (and engines with a fallback go around the mirror).
	StateCredsRejected = "credentials-rejected"
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
		return StateStaleServing, "unreachable, serving from cache", p.Reason, p.Since, p.NextProbe
	case h.Credentials.Rejected:
		return StateCredsRejected, "credentials rejected: pulls through it fail, and engines with a fallback pull around the mirror (fix the password or token)",
			h.Credentials.Reason, h.Credentials.Since, p.NextProbe
	case registryBreaker != nil:
		b := registryBreaker
		return StateStaleServing, "failing (" + b.Scope + " breaker open), serving from cache", b.LastError, b.Since, b.NextProbe
	case otherBreaker != nil:
		b := otherBreaker
		return StateBreakerOpen, b.Scope + " breaker open", b.LastError, b.Since, b.NextProbe
	case !h.LimitedUntil.IsZero():
		var kinds []string
		for _, l := range h.Limited {
			kinds = append(kinds, l.Kind)
		}
		text = "rate-limited until " + h.LimitedUntil.UTC().Format("15:04:05 UTC")
		if left := h.LimitedUntil.Sub(now); left > 0 {
			text += " (" + left.Round(time.Second).String() + ")"
		}
		return StateRateLimited, text, "429 for " + strings.Join(kinds, ", "), time.Time{}, h.LimitedUntil
	case p.State == upstream.ProbeUnknown:
		return StateUnknown, "not probed yet", "", time.Time{}, p.NextProbe
	}
	return StateUp, "up", "", p.Since, p.NextProbe
}

// Reasons for a degraded mirror: regcache_degraded's reason label and
// /status's reasons, one per sentence of degraded.
const (
	ReasonCredentials  = "credentials_rejected"      // an upstream refuses the configured credentials
	ReasonDiskFull     = "disk_full"                 // the cache disk is under its free-space floor
	ReasonCapUnreached = "cap_unreachable"           // storage.max_size is more than the disk can hold
	ReasonEmptyDown    = "empty_cache_upstream_down" // an upstream is unreachable and nothing is cached
	ReasonNotWritable  = "not_writable"              // the cache directory cannot be written
	ReasonPinnedOver   = "pinned_over_cap"           // pinned images alone exceed storage.max_size
	ReasonUntrusted    = "cluster_untrusted"         // Redis is away: the replica works from the last members it read
	ReasonUnreachable  = "upstream_unreachable"      // an upstream is unreachable; the cache answers
	ReasonBreakerOpen  = "breaker_open"              // an endpoint family fails fast
	ReasonRateLimited  = "rate_limited"              // a 429 holds some requests back
)

// degradedReasons is the closed set of regcache_degraded's reason label.
var degradedReasons = []string{ReasonCredentials, ReasonDiskFull, ReasonCapUnreached, ReasonEmptyDown,
	ReasonNotWritable, ReasonPinnedOver, ReasonUntrusted, ReasonUnreachable, ReasonBreakerOpen, ReasonRateLimited}

// unready are the reasons /readyz answers 503 for: pulls fail (or go
// around the mirror) rather than being served from the cache.
var unready = map[string]bool{ReasonCredentials: true, ReasonDiskFull: true, ReasonCapUnreached: true, ReasonEmptyDown: true}

// problem is one degraded condition.
type problem struct {
	reason string // from degradedReasons
	text   string
}

// diskFloor is the free space under which the cache disk counts as full:
// 5 % of its file system, at most 1 GiB. Fills of larger blobs fail above
// it too (507); under it, the next layers do.
func diskFloor(fsSize int64) int64 { return min(fsSize/20, 1<<30) }

// diskProblems judges the cache disk: free space under the floor, and a
// storage.max_size the disk cannot reach (the disk fills before eviction
// starts). free and fsSize are in bytes; cached is what the store holds.
func diskProblems(free, fsSize, cached, maxSize int64, capApplies bool) []problem {
	var out []problem
	if floor := diskFloor(fsSize); free < floor {
		out = append(out, problem{ReasonDiskFull, fmt.Sprintf("the cache disk is full: %s free, under the floor of %s (5%% of the disk, at most 1 GiB); new layers fail with 507 until space is freed or storage.max_size lowered",
			cache.HumanBytes(free), cache.HumanBytes(floor))})
	}
	if capApplies && maxSize > 0 && cached+free < maxSize {
		out = append(out, problem{ReasonCapUnreached, fmt.Sprintf("storage.max_size %s cannot be reached: the cache holds %s and the disk has %s free, so the disk fills before eviction starts; lower storage.max_size or free the disk (a percentage is applied to what the cache can use when it starts)",
			cache.HumanBytes(maxSize), cache.HumanBytes(cached), cache.HumanBytes(free))})
	}
	return out
}

// problems lists what is degraded, worst first; none when healthy.
func (a *Admin) problems(st Status) []problem {
	var out []problem
	for _, u := range st.Upstreams {
		if u.State == StateCredsRejected {
			out = append(out, problem{ReasonCredentials, upstreamSentence(u)})
		}
	}
	if free, err := a.src.Store().Available(); err == nil {
		size, err := cache.DiskSize(a.src.Config().Data)
		if err != nil {
			size = free
		}
		out = append(out, diskProblems(free, size, st.Cache.Bytes, st.Cache.MaxBytes, a.src.LocalStore())...)
	}
	empty := a.empty()
	for _, u := range st.Upstreams {
		if u.State == StateStaleServing && empty {
			out = append(out, problem{ReasonEmptyDown, upstreamSentence(u)})
		}
	}
	if err := a.src.Store().Writable(context.Background()); err != nil {
		out = append(out, problem{ReasonNotWritable, fmt.Sprintf("the cache directory is not writable, so nothing new is cached (hits and uncached pulls are still served): %v", err)})
	}
	if c := st.Cluster; c != nil && !c.Trusted {
		out = append(out, problem{ReasonUntrusted, fmt.Sprintf("the cluster's Redis cannot be reached: this replica works from the last %d live replicas it read (one fetch per digest still holds while they are right), the shared index reads as empty, and what it commits is not indexed until Redis is back", len(c.Live))})
	}
	if pinned, over := a.src.Pinned(); over {
		out = append(out, problem{ReasonPinnedOver, fmt.Sprintf("pinned images (rules with pin: true) hold %d bytes, over storage.max_size %d: they are never evicted, so the cap cannot be met; raise storage.max_size or pin less",
			pinned, a.src.MaxSize())})
	}
	for _, u := range st.Upstreams {
		switch {
		case u.State == StateStaleServing && !empty:
			out = append(out, problem{ReasonUnreachable, upstreamSentence(u)})
		case u.State == StateBreakerOpen:
			out = append(out, problem{ReasonBreakerOpen, upstreamSentence(u)})
		case u.State == StateRateLimited:
			out = append(out, problem{ReasonRateLimited, upstreamSentence(u)})
		}
	}
	return out
}

// empty reports that the cache holds nothing to serve.
func (a *Admin) empty() bool {
	t := a.src.Totals()
	return t.Blobs == 0 && t.Manifests == 0
}

// upstreamSentence words a degraded upstream for the degraded list.
func upstreamSentence(u UpstreamStatus) string {
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
	return s
}

// readyz answers 503 when the store cannot be read, or pulls fail rather
// than being served (upstream credentials refused, the disk full or its
// cap unreachable, nothing cached while an upstream is down); 200 with a
// body that says what is degraded otherwise (an unreachable upstream with
// content cached, a read-only cache directory).
func (a *Admin) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := a.src.Store().Readable(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: the cache store cannot be read: %v\n", err)
		return
	}
	st := a.Status()
	if len(st.Degraded) == 0 {
		fmt.Fprintln(w, "ok")
		return
	}
	if slices.ContainsFunc(st.Reasons, func(r string) bool { return unready[r] }) {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready, degraded:")
	} else {
		fmt.Fprintln(w, "ready, degraded:")
	}
	for _, d := range st.Degraded {
		fmt.Fprintln(w, "- "+d)
	}
}
