package app

import (
	"time"

	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/upstream"
)

// RequestTotals are the content requests served since start.
type RequestTotals struct {
	// ByResult counts hit, miss, stale, coalesced, denied and error.
	ByResult map[string]int64 `json:"byResult"`
	// HitRatio is hits and stale answers over the requests the cache was
	// asked for; ByteHitRatio is bytes from the cache over all bytes
	// served. Both are -1 before any request.
	HitRatio     float64 `json:"hitRatio"`
	ByteHitRatio float64 `json:"byteHitRatio"`
	// PullsSaved is clients' manifest GETs the upstream would have
	// counted and did not: net of the mirror's own manifest GETs (see
	// stats.saves).
	PullsSaved int64 `json:"pullsSaved"`
	// Bytes sent to clients from the cache, relayed from upstream on a
	// miss, and relayed from a fill another request started; bytes
	// fetched from upstreams by fills.
	BytesFromCache    int64 `json:"bytesFromCache"`
	BytesFromUpstream int64 `json:"bytesFromUpstream"`
	BytesCoalesced    int64 `json:"bytesCoalesced"`
	BytesFetched      int64 `json:"bytesFetched"`
	FillsCommitted    int64 `json:"fillsCommitted"`
	FillsFailed       int64 `json:"fillsFailed"`
}

// FillStatus is one running fill.
type FillStatus struct {
	Digest   string    `json:"digest"`
	Upstream string    `json:"upstream,omitempty"`
	Written  int64     `json:"written"`
	Size     int64     `json:"size"` // -1 until known
	Readers  int       `json:"readers"`
	Started  time.Time `json:"started"`
	// Rate is the bytes per second since the fill started.
	Rate float64 `json:"rate"`
}

// CacheStatus is the store's use against its cap.
type CacheStatus struct {
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"maxBytes"` // 0: unlimited
}

// completeStatus adds what Status shows beyond the upstream clients' own
// reports: states, savings, fills, cache use and the overall state.
func (a *App) completeStatus(st *Status) {
	now := time.Now()
	st.Time, st.Started = now, a.started
	t := a.stats.totals()
	ft := a.fills.Totals()
	st.Requests = RequestTotals{ByResult: map[string]int64{}, HitRatio: t.hitRatio(), ByteHitRatio: t.byteHitRatio(),
		PullsSaved: t.savedTotal(), BytesFromCache: t.BytesCache, BytesFromUpstream: t.BytesUp, BytesCoalesced: t.BytesJoin,
		FillsCommitted: ft.Committed, FillsFailed: ft.Failed}
	for i, r := range results {
		st.Requests.ByResult[r] = t.Results[i]
	}
	for _, n := range ft.Fetched {
		st.Requests.BytesFetched += n
	}
	empty := a.empty()
	for i := range st.Upstreams {
		u := &st.Upstreams[i]
		u.State, u.StateText, u.Reason, u.Since, u.NextProbe = upstreamState(u.Health, now)
		if u.State == stateStaleServing && empty {
			u.StateText = "unreachable, and nothing is cached to serve: pulls through it fail"
		}
		u.PullsSaved = t.Saved[u.Name]
		u.Reserve = u.BudgetReserve // the headroom background work leaves; the dashboard warns under it
		u.Reset = resetOf(u.RateLimit, u.Health, now)
		u.FetchedBytes = ft.Fetched[u.Name]
	}
	st.Fills = []FillStatus{}
	for _, p := range a.fills.Progress() {
		f := FillStatus{Digest: p.Digest.String(), Upstream: p.Origin, Written: p.Written, Size: p.Size, Readers: p.Readers, Started: p.Started}
		if secs := now.Sub(p.Started).Seconds(); secs > 0 {
			f.Rate = float64(p.Written) / secs
		}
		st.Fills = append(st.Fills, f)
	}
	st.Cache = CacheStatus{Bytes: a.totals().Bytes(), MaxBytes: a.maxSize.Load()}
}

// judge sets the overall state: degraded when anything is.
func (a *App) judge(st *Status) {
	st.Degraded, st.Reasons = nil, nil
	for _, p := range a.problems(*st) {
		st.Degraded = append(st.Degraded, p.text)
		st.Reasons = append(st.Reasons, p.reason)
	}
	st.State = "healthy"
	if len(st.Degraded) > 0 {
		st.State = "degraded"
	}
}

// resetOf is when the manifest-GET budget comes back: the Retry-After of
// a 429 on manifest GETs while it runs, else the window's reset.
func resetOf(rl upstream.RateLimit, h upstream.Health, now time.Time) time.Time {
	for _, l := range h.Limited {
		if l.Kind == upstream.KindManifestGet && l.Until.After(now) {
			return l.Until
		}
	}
	if rl.Reset.After(now) {
		return rl.Reset
	}
	return time.Time{}
}

// metricsState is the gauges' values at scrape time.
func (a *App) metricsState() metrics.State {
	st := a.status()
	ft := a.fills.Totals()
	ms := metrics.State{FillsCommitted: float64(ft.Committed), FillsFailed: float64(ft.Failed),
		CacheBytes: float64(st.Cache.Bytes), CacheMaxBytes: float64(st.Cache.MaxBytes)}
	for _, f := range st.Fills {
		ms.FillBytesWritten += float64(f.Written)
		if f.Size > 0 {
			ms.FillBytesExpected += float64(f.Size)
		}
		ms.FillReaders += float64(f.Readers)
	}
	for _, u := range st.Upstreams {
		us := metrics.UpstreamState{Name: u.Name, State: metricState(u.State), Reserve: float64(u.Reserve), FetchedBytes: float64(u.FetchedBytes)}
		if !u.Reset.IsZero() {
			us.ResetSeconds = max(u.Reset.Sub(st.Time).Seconds(), 0)
		}
		ms.Upstreams = append(ms.Upstreams, us)
	}
	return ms
}

// metricState is a state as regcache_upstream_state's label writes it.
func metricState(s string) string {
	switch s {
	case stateRateLimited:
		return "rate_limited"
	case stateBreakerOpen:
		return "breaker_open"
	case stateStaleServing:
		return "stale_serving"
	case stateCredsRejected:
		return "credentials_rejected"
	}
	return s
}
