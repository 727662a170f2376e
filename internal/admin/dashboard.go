package admin

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/ui"
)

// dashboardCountEvery is the least time between two counts of the index
// for the dashboard: a browser left refreshing, or many of them, reads the
// whole index at most this often.
const dashboardCountEvery = 5 * time.Second

// dashboardSnapshot is the dashboard's data for r's asker (ui.Source).
func (a *Admin) dashboardSnapshot(r *http.Request, span time.Duration) ui.Snapshot {
	return a.dashboard(a.Status(), a.totals.get(r.Context()), a.auth.maySeePrivate(r), span)
}

// dashboard is st as the page shows it, with the index's counts c, the top
// repositories, the last errors and the charts over span. Without private,
// repository names of credentialed upstreams (and the reasons of their
// errors, which may name them) are left out.
func (a *Admin) dashboard(st Status, c ui.Cache, private bool, span time.Duration) ui.Snapshot {
	s := ui.Snapshot{Time: st.Time, Started: st.Started, State: st.State, Degraded: st.Degraded,
		ActiveFills: st.ActiveFills, Totals: st.Requests, Fills: st.Fills, Cache: c, Private: private, History: a.chart(span)}
	if s.Degraded == nil {
		s.Degraded = []string{}
	}
	s.Cache.Bytes, s.Cache.MaxSize, s.Cache.MaxAge = st.Cache.Bytes, st.Cache.MaxBytes, a.src.Config().Storage.MaxAge
	s.Cache.Scrub = scrubText(a.d.Scrub.Status())
	s.Cache.Pinned, _ = a.src.Pinned()
	if c := st.Cluster; c != nil {
		s.Cache.Cluster = fmt.Sprintf("%d live replicas", len(c.Live))
		if !c.Trusted {
			s.Cache.Cluster += " (the last set read: Redis cannot be reached)"
		}
	}
	s.Fleet = fleetCard(st.Fleet)
	s.Policy = policyCard(st.Policy, private)
	for _, u := range st.Upstreams {
		s.Upstreams = append(s.Upstreams, dashboardUpstream(u))
	}
	pulls, bytes := a.stats.top()
	s.TopPulls, s.TopBytes = repos(pulls, private), repos(bytes, private)
	s.Errors = []ui.Event{}
	for _, e := range a.stats.lastErrors() {
		ev := ui.Event{Time: e.Time, Result: e.Result, Upstream: e.Upstream, Repo: e.Repo, Kind: e.Kind, Status: e.Status, Code: e.Code, Reason: e.Reason}
		if !private && a.stats.credentialed[e.Upstream] {
			ev.Repo, ev.Reason = "", ""
		}
		s.Errors = append(s.Errors, ev)
	}
	return s
}

// policyCard is the pull policy's card (nil without a policy); its
// denials only for an asker who may see private names.
func policyCard(p *PolicyStatus, private bool) *ui.Policy {
	if p == nil {
		return nil
	}
	card := &ui.Policy{Mode: p.Mode, Rules: p.Rules, Denials: []ui.Denial{}}
	if !private {
		return card
	}
	for _, d := range p.Denials {
		card.Denials = append(card.Denials, ui.Denial{Time: d.Time, Decision: d.Decision, Upstream: d.Upstream, Repository: d.Repository,
			Tag: d.Tag, Digest: d.Digest, Rule: d.Rule, Reason: d.Reason, Client: d.Client})
	}
	return card
}

// dashboardUpstream is an upstream's card: its rate limit with the
// reserve and reset, the kinds held back and the open breakers.
func dashboardUpstream(u UpstreamStatus) ui.Upstream {
	rl := u.RateLimit
	v := ui.Upstream{Name: u.Name, URL: u.URL, State: u.State, StateText: u.StateText, Reason: u.Reason,
		Since: u.Since, NextProbe: u.NextProbe, TokenRequests: u.TokenRequests, PullsSaved: u.PullsSaved, FetchedBytes: u.FetchedBytes,
		RateLimit: ui.RateLimit{Limit: rl.Limit, Remaining: rl.Remaining, Reserve: u.Reserve, Window: rl.Window, Source: rl.Source,
			Updated: rl.Updated, Reset: u.Reset, ResetEstimated: rl.ResetEstimated && !u.Reset.Equal(u.Health.LimitedUntil)}}
	v.Sealed, v.SealedMisses, v.Waiting = u.Health.Sealed, u.Health.SealedMissTotal, u.Health.Waiting
	for _, l := range u.Health.Limited {
		v.LimitedKinds = append(v.LimitedKinds, l.Kind)
	}
	for _, b := range u.Health.Breakers {
		if b.Open {
			v.Breakers = append(v.Breakers, ui.Breaker{Scope: b.Scope, LastError: b.LastError, Since: b.Since, NextProbe: b.NextProbe})
		}
	}
	return v
}

// repos is a top list as the page shows it: private names left out
// unless private.
func repos(in []repoCount, private bool) []ui.Repo {
	out := make([]ui.Repo, 0, len(in))
	for _, r := range in {
		name := r.Repo
		if r.Private && !private {
			name = ""
		}
		out = append(out, ui.Repo{Upstream: r.Upstream, Name: name, Count: r.Count})
	}
	return out
}

// runningTotals is an index that keeps running totals (the embedded one):
// reading them costs nothing.
type runningTotals interface{ Totals() cacheindex.Totals }

// newTotalsCounter counts ix for the dashboard: at each page load when
// it keeps running totals, else at most every dashboardCountEvery.
func newTotalsCounter(ix cacheindex.Backend, log *slog.Logger) *totalsCounter {
	every := dashboardCountEvery
	if _, ok := ix.(runningTotals); ok {
		every = 0
	}
	return &totalsCounter{count: func(ctx context.Context) (ui.Cache, error) { return countIndex(ctx, ix) }, every: every, now: time.Now, log: log}
}

// countIndex counts the index's blobs, their bytes and the tags: the
// running totals of the embedded index, or, on a shared one, a read of
// every entry (call it through a totalsCounter).
func countIndex(ctx context.Context, ix cacheindex.Backend) (ui.Cache, error) {
	if rt, ok := ix.(runningTotals); ok {
		t := rt.Totals()
		return ui.Cache{Blobs: int(t.Blobs), Bytes: t.BlobBytes, Tags: int(t.Tags)}, nil
	}
	var c ui.Cache
	err := ix.Blobs(ctx, func(_ digest.Digest, e cacheindex.BlobEntry) error {
		c.Blobs++
		c.Bytes += e.Size
		return nil
	})
	if err != nil {
		return ui.Cache{}, err
	}
	err = ix.Tags(ctx, func(string, string, string, cacheindex.TagEntry) error {
		c.Tags++
		return nil
	})
	if err != nil {
		return ui.Cache{}, err
	}
	return c, nil
}

// totalsCounter keeps the last count and counts again only after every has
// passed, or 19 times as long as the last count took when that is longer
// (so counting a huge index takes at most about 5% of the time). Callers
// that arrive during a count wait for it instead of starting their own.
type totalsCounter struct {
	count func(context.Context) (ui.Cache, error)
	every time.Duration
	now   func() time.Time
	log   *slog.Logger

	mu   sync.Mutex
	last ui.Cache // Counted is zero until a count succeeded
	next time.Time
}

// get is the counts, counted again if they are due. A count is the
// waiters' too, not only the first caller's: it runs to its end (the
// index's own bounds apply) even if that caller leaves.
func (t *totalsCounter) get(ctx context.Context) ui.Cache {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := t.now()
	if start.Before(t.next) {
		return t.last
	}
	c, err := t.count(context.WithoutCancel(ctx))
	end := t.now()
	t.next = end.Add(max(t.every, 19*end.Sub(start)))
	if err != nil {
		t.log.Error("count cache for the dashboard", slog.Any("error", err))
		t.last.Err = err // keep the last good counts, marked old
		return t.last
	}
	c.Counted = start
	t.last = c
	return t.last
}

// scrubText words the scrub's state for the dashboard.
func scrubText(st cache.ScrubStatus) string {
	if !st.Enabled {
		return "off"
	}
	t := fmt.Sprintf("every %s", st.Interval)
	if st.Pass > 0 {
		t += fmt.Sprintf(", pass %d (%d blobs checked)", st.Pass, st.Checked)
	}
	if st.DamagedTotal > 0 {
		t += fmt.Sprintf(", %d damaged files set aside", st.DamagedTotal)
	}
	return t
}
