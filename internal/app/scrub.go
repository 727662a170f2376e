package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/config"
)

// ScrubStatus is what the background scrub has done.
type ScrubStatus = cache.ScrubStatus

// newScrub builds the background scrub from storage.scrub_interval and
// storage.scrub_rate, over whichever store is open; in a cluster one
// replica runs each pass.
func (a *App) newScrub(cfg config.Config) *cache.Scrub {
	opts := []cache.ScrubOption{cache.WithScrubLogger(a.log)}
	if a.cluster != nil {
		opts = append(opts, cache.WithOnce(func(ctx context.Context, fn func()) bool { return a.cluster.Lock(ctx, "scrub", fn) }))
	}
	return cache.NewScrub(a.store, scrubPace(cfg), a.forgetDamaged, opts...)
}

// scrubPace is the scrub's pace in cfg.
func scrubPace(cfg config.Config) cache.Pace {
	return cache.Pace{Interval: cfg.Storage.ScrubInterval, Rate: cfg.Storage.ScrubRate}
}

// now is the app's clock (tests set another with setClock).
func (a *App) now() time.Time {
	if fn := a.clock.Load(); fn != nil {
		return (*fn)()
	}
	return time.Now()
}

// setClock sets the app's clock (tests).
func (a *App) setClock(fn func() time.Time) { a.clock.Store(&fn) }

// forgetDamaged drops a damaged or lost file's index entry and anything
// held of it in memory.
func (a *App) forgetDamaged(ctx context.Context, d digest.Digest) {
	if err := a.index.DeleteBlob(ctx, d); err != nil {
		a.log.Error("drop a damaged file's index entry", slog.String("digest", d.String()), slog.Any("error", err))
	}
	if a.content != nil {
		a.content.Forget(d)
	}
}
