package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/regcache/regcache/internal/cacheindex"
)

// evictEvery is how often the cache is checked against storage.max_size and
// storage.max_age.
const evictEvery = time.Minute

// Evict deletes least-recently-used blobs beyond storage.max_size and blobs
// unused for storage.max_age. Content reachable from a fresh tag (checked
// within the freshness window: in use right now) is kept, and so is
// everything reachable from the tags of an upstream that is down: it may
// be the only copy.
func (a *App) Evict(ctx context.Context) (int, int64, error) {
	if a.cfg.Storage.MaxSize <= 0 && a.cfg.Storage.MaxAge <= 0 {
		return 0, 0, nil
	}
	down := map[string]bool{}
	for _, u := range a.upstreams {
		if h := u.Client.Health(); h.Down || !h.LimitedUntil.IsZero() {
			down[u.Name] = true
		}
	}
	now := time.Now()
	protected, err := a.index.Reachable(func(up string, e cacheindex.TagEntry) bool {
		return down[up] || now.Sub(e.Checked) < a.cfg.Freshness
	})
	if err != nil {
		return 0, 0, err
	}
	plan, err := a.index.EvictionPlan(cacheindex.EvictPolicy{MaxSize: a.cfg.Storage.MaxSize, MaxAge: a.cfg.Storage.MaxAge, Protected: protected}, now)
	if err != nil {
		return 0, 0, err
	}
	var freed int64
	n := 0
	for _, d := range plan {
		if ctx.Err() != nil {
			break
		}
		e, _, _ := a.index.Blob(d)
		if err := a.store.Delete(ctx, d); err != nil {
			a.log.Warn("evict blob", slog.String("digest", d.String()), slog.Any("error", err))
			continue
		}
		if err := a.index.DeleteBlob(d); err != nil {
			return n, freed, err
		}
		a.content.Forget(d) // a manifest kept in memory goes with its file
		freed += e.Size
		n++
	}
	if n > 0 {
		a.log.Info("evicted cached blobs", slog.Int("blobs", n), slog.Int64("bytes", freed), slog.Int("protected", len(protected)))
	}
	return n, freed, nil
}

func (a *App) evictLoop(ctx context.Context) {
	t := time.NewTicker(evictEvery)
	defer t.Stop()
	for {
		if _, _, err := a.Evict(ctx); err != nil {
			a.log.Error("eviction", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
