package app

import (
	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/config"
)

// capInput is storage.max_size of cfg for this store, as cache.ResolveCap
// reads it.
func (a *App) capInput(cfg config.Config) cache.CapInput {
	return cache.CapInput{Percent: cfg.Storage.MaxSizePercent, MaxSize: cfg.Storage.MaxSize,
		Remote: cfg.Storage.S3.Bucket != "", Dir: cfg.Data, Free: a.store.Available,
		Cached: func() int64 { return a.evictor.Totals().Bytes() }}
}

// CapSummary is the cache cap applied at start, in words.
func (a *App) CapSummary() string { return a.evictor.CapNote() }
