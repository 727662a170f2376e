package app

import (
	"fmt"
	"log/slog"
)

// applyCap resolves storage.max_size for this store and says which cap
// applies, in the log and in CapSummary. A percentage is of the data
// directory's file system, but never more than that share of what the
// cache can use (the bytes it holds plus the free space): on a disk shared
// with other files the share of the whole disk would be reached only after
// the disk is full. With S3 a percentage of a local disk says nothing of
// the bucket, so it bounds nothing.
func (a *App) applyCap() error {
	pct := a.cfg.Storage.MaxSizePercent
	switch {
	case pct > 0 && a.cfg.Storage.S3.Bucket != "":
		a.cfg.Storage.MaxSize = 0
		a.capNote = fmt.Sprintf("none: %g%% is a share of a local disk and the content is in S3; set storage.max_size in bytes to bound the bucket", pct)
		a.log.Warn("no cache cap: storage.max_size is a percentage of a local disk and the content is in S3; set it in bytes to bound the bucket", slog.Float64("percent", pct))
	case pct > 0:
		size, err := fsSize(a.cfg.Data)
		if err != nil {
			return fmt.Errorf("storage.max_size %g%%: size of the file system of %s: %w", pct, a.cfg.Data, err)
		}
		free, err := a.store.Available()
		if err != nil {
			return fmt.Errorf("storage.max_size %g%%: free space of %s: %w", pct, a.cfg.Data, err)
		}
		cached := a.totals().Bytes()
		share := int64(float64(size) * pct / 100)
		usable := int64(float64(cached+free) * pct / 100)
		a.cfg.Storage.MaxSize = min(share, usable)
		a.capNote = fmt.Sprintf("%s (%g%% of the %s disk)", humanBytes(share), pct, humanBytes(size))
		if usable < share {
			a.capNote = fmt.Sprintf("%s (%g%% of the %s the cache can use: %s cached, %s free on a %s disk)",
				humanBytes(usable), pct, humanBytes(cached+free), humanBytes(cached), humanBytes(free), humanBytes(size))
		}
		a.log.Info("cache cap applied", slog.String("cap", a.capNote), slog.Int64("max_size_bytes", a.cfg.Storage.MaxSize),
			slog.Float64("percent", pct), slog.Int64("disk_bytes", size), slog.Int64("cached_bytes", cached), slog.Int64("free_bytes", free))
	case a.cfg.Storage.MaxSize > 0:
		a.capNote = humanBytes(a.cfg.Storage.MaxSize)
		a.log.Info("cache cap applied", slog.String("cap", a.capNote), slog.Int64("max_size_bytes", a.cfg.Storage.MaxSize))
	default:
		a.capNote = "none (storage.max_size 0): the disk can fill; set e.g. 80%"
		a.log.Warn("no cache cap: storage.max_size is 0, so the cache grows until the disk is full; set it, e.g. --max-size 80%")
	}
	a.maxSize.Store(a.cfg.Storage.MaxSize)
	return nil
}

// CapSummary is the cache cap applied at start, in words.
func (a *App) CapSummary() string { return a.capNote }
