package app

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/ui"
)

// dashboardCountEvery is the least time between two counts of the index
// for the dashboard: a browser left refreshing, or many of them, reads the
// whole index at most this often.
const dashboardCountEvery = 5 * time.Second

// dashboardHandler is the admin listener's dashboard: the page, its
// assets and its data.
func (a *App) dashboardHandler() http.Handler {
	every := dashboardCountEvery
	if a.bolt != nil {
		every = 0 // the index's running totals: reading them costs nothing
	}
	totals := &totalsCounter{count: a.cacheTotals, every: every, now: time.Now, log: a.log}
	return ui.New(ui.SourceFunc(func(r *http.Request, span time.Duration) ui.Snapshot {
		return a.dashboardSnapshot(totals.get(), a.adminMaySeePrivate(r), span)
	}), ui.WithLogger(a.log))
}

// dashboardSnapshot is Status, the cache's counts, the top repositories,
// the last errors and the charts over span. Without private, repository
// names of credentialed upstreams (and the reasons of their errors, which
// may name them) are left out.
func (a *App) dashboardSnapshot(c ui.Cache, private bool, span time.Duration) ui.Snapshot {
	st := a.Status()
	s := ui.Snapshot{Time: st.Time, Started: st.Started, State: st.State, Degraded: st.Degraded,
		ActiveFills: st.ActiveFills, Cache: c, Private: private, History: a.chart(span)}
	if s.Degraded == nil {
		s.Degraded = []string{}
	}
	s.Cache.Bytes, s.Cache.MaxSize, s.Cache.MaxAge = st.Cache.Bytes, st.Cache.MaxBytes, a.config().Storage.MaxAge
	s.Cache.Scrub = scrubText(a.ScrubStatus())
	s.Fleet = fleetCard(st.Fleet)
	rq := st.Requests
	s.Totals = ui.Totals{ByResult: rq.ByResult, HitRatio: rq.HitRatio, ByteHitRatio: rq.ByteHitRatio, PullsSaved: rq.PullsSaved,
		BytesFromCache: rq.BytesFromCache, BytesFromUpstream: rq.BytesFromUpstream, BytesCoalesced: rq.BytesCoalesced,
		BytesFetched: rq.BytesFetched, FillsCommitted: rq.FillsCommitted, FillsFailed: rq.FillsFailed}
	for _, u := range st.Upstreams {
		rl := u.RateLimit
		v := ui.Upstream{Name: u.Name, URL: u.URL, State: u.State, StateText: u.StateText, Reason: u.Reason,
			Since: u.Since, NextProbe: u.NextProbe, TokenRequests: u.TokenRequests, PullsSaved: u.PullsSaved, FetchedBytes: u.FetchedBytes,
			RateLimit: ui.RateLimit{Limit: rl.Limit, Remaining: rl.Remaining, Reserve: u.Reserve, Window: rl.Window, Source: rl.Source,
				Updated: rl.Updated, Reset: u.Reset, ResetEstimated: rl.ResetEstimated && !u.Reset.Equal(u.Health.LimitedUntil)}}
		for _, l := range u.Health.Limited {
			v.LimitedKinds = append(v.LimitedKinds, l.Kind)
		}
		for _, b := range u.Health.Breakers {
			if b.Open {
				v.Breakers = append(v.Breakers, ui.Breaker{Scope: b.Scope, LastError: b.LastError, Since: b.Since, NextProbe: b.NextProbe})
			}
		}
		s.Upstreams = append(s.Upstreams, v)
	}
	s.Fills = []ui.Fill{}
	for _, f := range st.Fills {
		s.Fills = append(s.Fills, ui.Fill{Digest: f.Digest, Upstream: f.Upstream, Written: f.Written, Size: f.Size,
			Readers: f.Readers, Rate: f.Rate, Started: f.Started})
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

// cacheTotals counts the index's blobs, their bytes and the tags: the
// running totals of the embedded index, or, on a shared one, a read of
// every entry (call it through a totalsCounter).
func (a *App) cacheTotals() (ui.Cache, error) {
	if a.bolt != nil {
		t := a.bolt.Totals()
		return ui.Cache{Blobs: int(t.Blobs), Bytes: t.BlobBytes, Tags: int(t.Tags)}, nil
	}
	var c ui.Cache
	err := a.index.Blobs(func(_ digest.Digest, e cacheindex.BlobEntry) error {
		c.Blobs++
		c.Bytes += e.Size
		return nil
	})
	if err != nil {
		return ui.Cache{}, err
	}
	err = a.index.Tags(func(string, string, string, cacheindex.TagEntry) error {
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
	count func() (ui.Cache, error)
	every time.Duration
	now   func() time.Time
	log   *slog.Logger

	mu   sync.Mutex
	last ui.Cache // Counted is zero until a count succeeded
	next time.Time
}

func (t *totalsCounter) get() ui.Cache {
	t.mu.Lock()
	defer t.mu.Unlock()
	start := t.now()
	if start.Before(t.next) {
		return t.last
	}
	c, err := t.count()
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
func scrubText(st ScrubStatus) string {
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
