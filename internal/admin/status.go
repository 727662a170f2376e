package admin

import (
	"time"

	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/ui"
	"github.com/regcache/regcache/internal/upstream"
)

// Status is the mirror's state: what /status answers, what `regcache
// status` prints and what the dashboard shows.
type Status struct {
	Upstreams   []UpstreamStatus `json:"upstreams"`
	ActiveFills int              `json:"activeFills"`
	// State is healthy or degraded; Degraded says what is, one sentence each.
	State    string   `json:"state"`
	Degraded []string `json:"degraded,omitempty"`
	// Reasons are Degraded's reasons, in the same order, as
	// regcache_degraded's reason label names them.
	Reasons []string  `json:"reasons,omitempty"`
	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	// Requests are the counts since start.
	Requests RequestTotals `json:"requests"`
	Fills    []FillStatus  `json:"fills"`
	Cache    CacheStatus   `json:"cache"`
	// Settings are the options in effect, by YAML key, as each running
	// part holds them (secrets left out).
	Settings map[string]string `json:"settings"`
	// Fleet is the clients the mirror served and the canary arrivals.
	Fleet *fleet.Summary `json:"fleet,omitempty"`
	// Cluster is this replica's view of its cluster (none on one node).
	Cluster *ClusterStatus `json:"cluster,omitempty"`
	// Policy is the pull policy in effect and its recent denials (none
	// without a policy).
	Policy *PolicyStatus `json:"policy,omitempty"`
}

// PolicyStatus is the pull policy's mode, its number of rules and the
// last decisions that refused a pull (or would have, in audit mode),
// newest first.
type PolicyStatus struct {
	Mode    string          `json:"mode"`
	Rules   int             `json:"rules"`
	Denials []mirror.Denial `json:"denials"`
}

// ClusterStatus is a replica's view of its cluster: itself, the replicas
// it takes for live, whether that set was read from Redis (false: Redis is
// away and the set is the last one read), and the leases its fills hold.
type ClusterStatus struct {
	Self    string   `json:"self"`
	Live    []string `json:"live"`
	Trusted bool     `json:"trusted"`
	Leases  int      `json:"leases"`
}

// UpstreamStatus is one upstream's state, without credentials.
type UpstreamStatus struct {
	Name          string             `json:"name"`
	URL           string             `json:"url"`
	RateLimit     upstream.RateLimit `json:"rateLimit"`
	Health        upstream.Health    `json:"health"`
	TokenRequests int64              `json:"tokenRequests"`
	// State is up, unknown, rate-limited, breaker-open or stale-serving;
	// StateText words it, Reason says why, Since since when, NextProbe
	// when it is asked next.
	State      string    `json:"state"`
	StateText  string    `json:"stateText"`
	Reason     string    `json:"reason,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	NextProbe  time.Time `json:"nextProbe,omitzero"`
	PullsSaved int64     `json:"pullsSaved"`
	// Reserve is the headroom (ratelimit-remaining) under which the
	// dashboard warns; Reset when the budget comes back (zero if unknown).
	Reserve      int       `json:"reserve"`
	Reset        time.Time `json:"reset,omitzero"`
	FetchedBytes int64     `json:"fetchedBytes"`
	// BudgetReserve is how many counted pulls background work (regcache
	// warm) leaves to other clients, from budget_reserve.
	BudgetReserve int `json:"budgetReserve"`
	// Fallback is the upstream's fallback chain and what its members
	// answered, when it has one.
	Fallback *mirror.FallbackState `json:"fallback,omitempty"`
}

// RequestTotals are the content requests served since start (the
// dashboard's totals card shows them as they are).
type RequestTotals = ui.Totals

// FillStatus is one running fill (the dashboard's fills table shows them
// as they are).
type FillStatus = ui.Fill

// CacheStatus is the store's use against its cap.
type CacheStatus struct {
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"maxBytes"` // 0: unlimited
}

// withoutNames drops what names repositories (a fallback's last cause is
// an upstream error naming the request), for callers who may not see
// private names.
func (st *Status) withoutNames() {
	st.Fleet = withoutAddrs(st.Fleet)
	if st.Policy != nil { // denials name repositories and clients
		p := *st.Policy
		p.Denials = nil
		st.Policy = &p
	}
	for i, u := range st.Upstreams {
		st.Upstreams[i].Health.SealedMisses = nil // they name repositories
		if u.Fallback != nil {
			fb := *u.Fallback
			fb.LastCause = ""
			st.Upstreams[i].Fallback = &fb
		}
	}
}

// Status reports the upstreams' health and rate limits, the requests
// served, the running fills, the cache's use and the overall judgement.
func (a *Admin) Status() Status {
	st := a.status()
	a.judge(&st)
	return st
}

// status is Status without the overall judgement (which tries a write).
func (a *Admin) status() Status {
	now := time.Now()
	fills := a.src.Fills()
	st := Status{ActiveFills: fills.Active(), Time: now, Started: a.started,
		Cache: CacheStatus{Bytes: a.src.Totals().Bytes(), MaxBytes: a.src.MaxSize()}, Settings: a.src.Settings(), Fleet: a.fleetStatus(), Cluster: a.src.Cluster(), Policy: a.src.Policy()}
	t, ft := a.stats.totals(), fills.Totals()
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
	for _, u := range a.src.Upstreams() {
		us := upstreamStatus(u, now, empty)
		us.PullsSaved, us.FetchedBytes = t.Saved[u.Name], ft.Fetched[u.Name]
		st.Upstreams = append(st.Upstreams, us)
	}
	st.Fills = []FillStatus{}
	for _, p := range fills.Progress() {
		f := FillStatus{Digest: p.Digest.String(), Upstream: p.Origin, Written: p.Written, Size: p.Size, Readers: p.Readers, Started: p.Started}
		if secs := now.Sub(p.Started).Seconds(); secs > 0 {
			f.Rate = float64(p.Written) / secs
		}
		st.Fills = append(st.Fills, f)
	}
	return st
}

// upstreamStatus is u's client's report and its state; empty says the
// cache holds nothing to serve.
func upstreamStatus(u Upstream, now time.Time, empty bool) UpstreamStatus {
	c := u.Client
	us := UpstreamStatus{Name: u.Name, URL: c.URL(), RateLimit: c.RateLimit(), Health: c.Health(), TokenRequests: c.TokenRequests(),
		BudgetReserve: u.Reserve, Fallback: u.Fallback}
	us.State, us.StateText, us.Reason, us.Since, us.NextProbe = upstreamState(us.Health, now)
	if us.State == StateStaleServing && empty {
		us.StateText = "unreachable, and nothing is cached to serve: pulls through it fail"
	}
	us.Reserve = us.BudgetReserve // the headroom background work leaves; the dashboard warns under it
	us.Reset = resetOf(us.RateLimit, us.Health, now)
	return us
}

// judge sets the overall state: degraded when anything is.
func (a *Admin) judge(st *Status) {
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
func (a *Admin) metricsState() metrics.State {
	st := a.status()
	ms := metrics.State{FillsCommitted: float64(st.Requests.FillsCommitted), FillsFailed: float64(st.Requests.FillsFailed),
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
	case StateRateLimited:
		return "rate_limited"
	case StateBreakerOpen:
		return "breaker_open"
	case StateStaleServing:
		return "stale_serving"
	case StateCredsRejected:
		return "credentials_rejected"
	}
	return s
}
