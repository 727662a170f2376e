package app

import (
	"log/slog"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/config"
)

// applyCap resolves storage.max_size of cfg for this store, puts it in
// effect, and says which cap applies, in the log and in CapSummary.
func (a *App) applyCap(cfg *config.Config) error {
	n, note, err := a.resolveCap(*cfg)
	if err != nil {
		return err
	}
	cfg.Storage.MaxSize, a.capNote = n, note
	a.evictor.SetMaxSize(n)
	if n > 0 {
		a.log.Info("cache cap applied", slog.String("cap", note), slog.Int64("max_size_bytes", n), slog.Float64("percent", cfg.Storage.MaxSizePercent))
	} else {
		a.log.Warn("no cache cap: "+note, slog.Float64("percent", cfg.Storage.MaxSizePercent))
	}
	return nil
}

// CapSummary is the cache cap applied at start, in words.
func (a *App) CapSummary() string { return a.capNote }

// resolveCap is storage.max_size of cfg in bytes for this store, and the
// cap in words (cache.ResolveCap).
func (a *App) resolveCap(cfg config.Config) (int64, string, error) {
	return cache.ResolveCap(cache.CapInput{Percent: cfg.Storage.MaxSizePercent, MaxSize: cfg.Storage.MaxSize,
		Remote: cfg.Storage.S3.Bucket != "", Dir: cfg.Data, Free: a.store.Available, Cached: func() int64 { return a.evictor.Totals().Bytes() }})
}
