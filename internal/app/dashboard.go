package app

import (
	"context"
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

// dashboardHandler is the admin listener's GET /.
func (a *App) dashboardHandler() http.Handler {
	totals := &totalsCounter{count: a.cacheTotals, every: dashboardCountEvery, now: time.Now, log: a.log}
	return ui.New(ui.SourceFunc(func(context.Context) ui.Snapshot { return a.dashboardSnapshot(totals.get()) }), ui.WithLogger(a.log))
}

// dashboardSnapshot is Status plus the cache's size.
func (a *App) dashboardSnapshot(c ui.Cache) ui.Snapshot {
	st := a.Status()
	s := ui.Snapshot{ActiveFills: st.ActiveFills, Cache: c, Time: time.Now()}
	s.Cache.MaxSize, s.Cache.MaxAge = a.cfg.Storage.MaxSize, a.cfg.Storage.MaxAge
	for _, u := range st.Upstreams {
		rl := u.RateLimit
		h := ui.Health{Down: u.Health.Down, LimitedUntil: u.Health.LimitedUntil}
		for _, l := range u.Health.Limited {
			h.LimitedKinds = append(h.LimitedKinds, l.Kind)
		}
		for _, b := range u.Health.Breakers {
			if b.Open {
				h.Breakers = append(h.Breakers, ui.Breaker{Scope: b.Scope, LastError: b.LastError, Since: b.Since, NextProbe: b.NextProbe})
			}
		}
		s.Upstreams = append(s.Upstreams, ui.Upstream{Name: u.Name, URL: u.URL,
			RateLimit: ui.RateLimit{Limit: rl.Limit, Remaining: rl.Remaining, Window: rl.Window, Source: rl.Source, Updated: rl.Updated},
			Health:    h, TokenRequests: u.TokenRequests})
	}
	return s
}

// cacheTotals counts the index's blobs, their bytes and the tags. It reads
// every entry: call it through a totalsCounter.
func (a *App) cacheTotals() (ui.Cache, error) {
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
