package admin

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/registry"
)

// Request results, the closed set the dashboard's cards and charts and
// regcache_request_results_total count content requests by.
const (
	resultHit       = "hit"       // answered from the cache (revalidated tags and cached "not found" too)
	resultMiss      = "miss"      // fetched from the upstream for this request
	resultStale     = "stale"     // the upstream failed; the last good content was served
	resultCoalesced = "coalesced" // a miss that joined another request's fill
	resultDenied    = "denied"    // refused by the access policy (401, 403)
	resultError     = "error"     // a failure answer (5xx, 429, a bad request)
)

// results is the order of the results in counters and charts.
var results = []string{resultHit, resultMiss, resultStale, resultCoalesced, resultDenied, resultError}

// Byte sources of regcache_served_bytes_total.
const (
	sourceCache     = "cache"     // hits and stale answers
	sourceUpstream  = "upstream"  // misses: bytes relayed as the fill fetched them
	sourceCoalesced = "coalesced" // misses that joined another request's fill
)

// sources is the closed set of regcache_served_bytes_total's source.
var sources = []string{sourceCache, sourceUpstream, sourceCoalesced}

// resultOf classifies an answered content request; "" for requests that
// are not about content (the /v2/ ping, the token endpoint).
func resultOf(s registry.Served) string {
	switch s.Kind {
	case "manifest", "blob", "tags", "referrers":
	default:
		return ""
	}
	switch {
	case s.Status == 401 || s.Status == 403:
		return resultDenied
	case s.Status == 0 || s.Status == 429 || s.Status >= 500:
		return resultError
	case s.Cache == mirror.CacheStale:
		return resultStale
	case s.Cache == mirror.CacheMiss && s.Joined:
		return resultCoalesced
	case s.Cache == mirror.CacheMiss:
		return resultMiss
	case s.Cache == mirror.CacheHit || s.Cache == mirror.CacheRevalidated || s.Cache == mirror.CacheNegative:
		return resultHit
	}
	return resultError // refused before the cache was asked (a bad name, say)
}

// stats keeps what the dashboard shows of the requests served: counts by
// result, bytes by source, pulls saved, the top repositories and the last
// errors. Everything is bounded: counters by closed sets, repositories by
// topK, errors by maxErrors.
type stats struct {
	prom *metrics.Savings // nil: no Prometheus counters

	results    [6]atomic.Int64 // by results' order
	bytesCache atomic.Int64
	bytesUp    atomic.Int64
	bytesJoin  atomic.Int64
	saved      sync.Map // upstream name → *atomic.Int64 (a closed set: the configured upstreams)

	// credentialed upstreams: their repositories' names are private.
	credentialed map[string]bool
	// spent is how many manifest GETs the mirror sent an upstream (nil:
	// none known); matched how many of them clients' GETs have accounted
	// for, per upstream.
	spent   func(upstream string) int64
	matched map[string]int64

	mu       sync.Mutex
	topPulls *topK
	topBytes *topK
	errors   []errorEvent // a ring of the last maxErrors
	errNext  int
}

const (
	maxErrors  = 20
	topRepos   = 10  // shown
	topTracked = 256 // tracked (Space-Saving counters)
)

// errorEvent is one failed or stale answer.
type errorEvent struct {
	Time     time.Time
	Result   string
	Upstream string
	Repo     string
	Kind     string
	Status   int
	Code     string
	Reason   string
}

func newStats(prom *metrics.Savings, credentialed map[string]bool) *stats {
	return &stats{prom: prom, credentialed: credentialed, matched: map[string]int64{}, topPulls: newTopK(topTracked), topBytes: newTopK(topTracked)}
}

// observe records one answered request (registry.WithObserver).
func (s *stats) observe(sv registry.Served) {
	res := resultOf(sv)
	if res == "" {
		return
	}
	s.results[slices.Index(results, res)].Add(1)
	src := ""
	switch res {
	case resultHit, resultStale:
		src = sourceCache
		s.bytesCache.Add(sv.Bytes)
	case resultMiss:
		src = sourceUpstream
		s.bytesUp.Add(sv.Bytes)
	case resultCoalesced:
		src = sourceCoalesced
		s.bytesJoin.Add(sv.Bytes)
	}
	saved := s.saves(sv)
	if saved {
		v, ok := s.saved.Load(sv.Upstream)
		if !ok {
			v, _ = s.saved.LoadOrStore(sv.Upstream, new(atomic.Int64))
		}
		v.(*atomic.Int64).Add(1)
	}
	if s.prom != nil {
		s.prom.Result(res).Inc()
		if src != "" && sv.Bytes > 0 {
			s.prom.Served(src).Add(float64(sv.Bytes))
		}
		if saved {
			s.prom.Saved(sv.Upstream).Inc()
		}
	}
	s.remember(sv, res)
}

// remember counts sv in the top lists and, if it failed or was stale,
// keeps it in the ring of the last errors.
func (s *stats) remember(sv registry.Served, res string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv.Repo != "" && sv.Upstream != "" {
		key := repoKey{sv.Upstream, sv.Repo}
		if sv.Kind == "manifest" && sv.Method == "GET" && sv.Status == 200 {
			s.topPulls.add(key, 1)
		}
		if sv.Bytes > 0 {
			s.topBytes.add(key, sv.Bytes)
		}
	}
	if res != resultError && res != resultDenied && res != resultStale {
		return
	}
	reason := sv.ErrMessage
	if res == resultStale {
		reason = sv.Stale
	}
	e := errorEvent{Time: sv.Time, Result: res, Upstream: sv.Upstream, Repo: sv.Repo, Kind: sv.Kind,
		Status: sv.Status, Code: sv.ErrCode, Reason: truncateReason(reason)}
	if len(s.errors) < maxErrors {
		s.errors = append(s.errors, e)
	} else {
		s.errors[s.errNext] = e
	}
	s.errNext = (s.errNext + 1) % maxErrors
}

// saves reports whether sv is a pull saved: a request the upstream's
// limit would have counted (a manifest GET) that the mirror answered
// without spending one. Every manifest GET the mirror sent the upstream
// is set against the next client GET: the miss it answered, or the GET by
// digest that follows an engine's HEAD of the tag (free upstream, but the
// mirror had to GET the manifest to answer it). A revalidation costs a
// HEAD, which Docker Hub does not count.
func (s *stats) saves(sv registry.Served) bool {
	if sv.Kind != "manifest" || sv.Method != "GET" || sv.Status != 200 {
		return false
	}
	if s.spent == nil {
		return sv.Cache == mirror.CacheHit || sv.Cache == mirror.CacheRevalidated || sv.Cache == mirror.CacheStale
	}
	spent := s.spent(sv.Upstream)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.matched[sv.Upstream] < spent {
		s.matched[sv.Upstream]++
		return false
	}
	return true
}

// truncateReason bounds a reason at 300 bytes (an upstream's message is
// bounded already; this keeps the page readable).
func truncateReason(s string) string {
	if len(s) <= 300 {
		return s
	}
	return s[:300] + "…"
}

// totals is a copy of the counters.
type totals struct {
	Results    [6]int64
	BytesCache int64
	BytesUp    int64
	BytesJoin  int64
	Saved      map[string]int64
}

func (s *stats) totals() totals {
	var t totals
	for i := range s.results {
		t.Results[i] = s.results[i].Load()
	}
	t.BytesCache, t.BytesUp, t.BytesJoin = s.bytesCache.Load(), s.bytesUp.Load(), s.bytesJoin.Load()
	t.Saved = map[string]int64{}
	s.saved.Range(func(k, v any) bool { t.Saved[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return t
}

func (t totals) result(name string) int64 { return t.Results[slices.Index(results, name)] }

// savedTotal is the pulls saved over every upstream.
func (t totals) savedTotal() int64 {
	var n int64
	for _, v := range t.Saved {
		n += v
	}
	return n
}

// hitRatio is hits (stale answers included) over the requests the cache
// was asked for; -1 before any.
func (t totals) hitRatio() float64 {
	hits := t.result(resultHit) + t.result(resultStale)
	all := hits + t.result(resultMiss) + t.result(resultCoalesced)
	if all == 0 {
		return -1
	}
	return float64(hits) / float64(all)
}

// byteHitRatio is bytes from the cache over all bytes served; -1 before any.
func (t totals) byteHitRatio() float64 {
	all := t.BytesCache + t.BytesUp + t.BytesJoin
	if all == 0 {
		return -1
	}
	return float64(t.BytesCache) / float64(all)
}

// repoCount is one repository's count in a top list.
type repoCount struct {
	Upstream string
	Repo     string
	Count    int64
	Private  bool // of a credentialed upstream: named only to the admin
}

// top returns the top repositories by pulls and by bytes.
func (s *stats) top() (pulls, bytes []repoCount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	conv := func(in []topEntry) []repoCount {
		out := make([]repoCount, 0, len(in))
		for _, e := range in {
			out = append(out, repoCount{Upstream: e.key.upstream, Repo: e.key.repo, Count: e.count, Private: s.credentialed[e.key.upstream]})
		}
		return out
	}
	return conv(s.topPulls.top(topRepos)), conv(s.topBytes.top(topRepos))
}

// lastErrors returns the last errors, newest first.
func (s *stats) lastErrors() []errorEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]errorEvent, 0, len(s.errors))
	for i := 1; i <= len(s.errors); i++ { // errNext is where the next goes, one past the newest
		out = append(out, s.errors[(s.errNext-i+len(s.errors))%len(s.errors)])
	}
	return out
}

// credentialed lists the upstreams the mirror asks with credentials, or
// whose fallback chain has a member it asks with credentials: what it
// fetched for them may be private, so their repositories are named on the
// dashboard only to the admin.
func credentialed(cfg config.Config) map[string]bool {
	out := map[string]bool{}
	withCreds := config.Upstream.Credentialed
	for _, u := range cfg.Upstreams {
		out[u.Name] = withCreds(u)
		// A chain is as private as its most privileged member.
		for _, name := range u.Fallback {
			for _, m := range cfg.Upstreams {
				if strings.EqualFold(m.Name, name) && withCreds(m) {
					out[u.Name] = true
				}
			}
		}
	}
	return out
}
