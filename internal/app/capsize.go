package app

import (
	"fmt"
	"log/slog"

	"github.com/regcache/regcache/internal/admin"
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

// resolveCap is storage.max_size of cfg in bytes for this store, and the
// cap in words. A percentage is of the data directory's file system, but
// never more than that share of what the cache can use (the bytes it
// holds plus the free space): on a disk shared with other files the share
// of the whole disk would be reached only after the disk is full. With S3
// a percentage of a local disk says nothing of the bucket, so it bounds
// nothing.
func (a *App) resolveCap(cfg config.Config) (int64, string, error) {
	pct := cfg.Storage.MaxSizePercent
	switch {
	case pct > 0 && cfg.Storage.S3.Bucket != "":
		return 0, fmt.Sprintf("none: %g%% is a share of a local disk and the content is in S3; set storage.max_size in bytes to bound the bucket", pct), nil
	case pct > 0:
		size, err := admin.DiskSize(cfg.Data)
		if err != nil {
			return 0, "", fmt.Errorf("storage.max_size %g%%: size of the file system of %s: %w", pct, cfg.Data, err)
		}
		free, err := a.store.Available()
		if err != nil {
			return 0, "", fmt.Errorf("storage.max_size %g%%: free space of %s: %w", pct, cfg.Data, err)
		}
		cached := a.evictor.Totals().Bytes()
		share := int64(float64(size) * pct / 100)
		usable := int64(float64(cached+free) * pct / 100)
		if usable < share {
			return usable, fmt.Sprintf("%s (%g%% of the %s the cache can use: %s cached, %s free on a %s disk)",
				admin.HumanBytes(usable), pct, admin.HumanBytes(cached+free), admin.HumanBytes(cached), admin.HumanBytes(free), admin.HumanBytes(size)), nil
		}
		return share, fmt.Sprintf("%s (%g%% of the %s disk)", admin.HumanBytes(share), pct, admin.HumanBytes(size)), nil
	case cfg.Storage.MaxSize > 0:
		return cfg.Storage.MaxSize, admin.HumanBytes(cfg.Storage.MaxSize), nil
	}
	return 0, "none (storage.max_size 0): the cache grows until the disk is full; set it, e.g. --max-size 80%", nil
}

// CapSummary is the cache cap applied at start, in words.
func (a *App) CapSummary() string { return a.capNote }
