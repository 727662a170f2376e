package cache

import (
	"fmt"
	"log/slog"
	"syscall"
)

// CapInput is what resolving storage.max_size needs: the option (a
// percentage, or bytes), where the content is (Remote: not on the local
// disk of Dir), the free space there and the bytes cached (asked only for a percentage).
type CapInput struct {
	Percent float64
	MaxSize int64
	Remote  bool
	Dir     string
	Free    func() (int64, error)
	Cached  func() int64
}

// ResolveCap is storage.max_size in bytes for this store, and the cap in
// words. A percentage is of the data directory's file system, but
// never more than that share of what the cache can use (the bytes it
// holds plus the free space): on a disk shared with other files the share
// of the whole disk would be reached only after the disk is full. With S3
// a percentage of a local disk says nothing of the bucket, so it bounds
// nothing.
func ResolveCap(in CapInput) (int64, string, error) {
	pct := in.Percent
	switch {
	case pct > 0 && in.Remote:
		return 0, fmt.Sprintf("none: %g%% is a share of a local disk and the content is in S3; set storage.max_size in bytes to bound the bucket", pct), nil
	case pct > 0:
		size, err := DiskSize(in.Dir)
		if err != nil {
			return 0, "", fmt.Errorf("storage.max_size %g%%: size of the file system of %s: %w", pct, in.Dir, err)
		}
		free, err := in.Free()
		if err != nil {
			return 0, "", fmt.Errorf("storage.max_size %g%%: free space of %s: %w", pct, in.Dir, err)
		}
		cached := in.Cached()
		share := int64(float64(size) * pct / 100)
		usable := int64(float64(cached+free) * pct / 100)
		if usable < share {
			return usable, fmt.Sprintf("%s (%g%% of the %s the cache can use: %s cached, %s free on a %s disk)",
				HumanBytes(usable), pct, HumanBytes(cached+free), HumanBytes(cached), HumanBytes(free), HumanBytes(size)), nil
		}
		return share, fmt.Sprintf("%s (%g%% of the %s disk)", HumanBytes(share), pct, HumanBytes(size)), nil
	case in.MaxSize > 0:
		return in.MaxSize, HumanBytes(in.MaxSize), nil
	}
	return 0, "none (storage.max_size 0): the cache grows until the disk is full; set it, e.g. --max-size 80%", nil
}

// HumanBytes writes n in binary units, e.g. 1.5 GiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// DiskSize is the size of the file system holding dir.
func DiskSize(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * int64(st.Frsize), nil
}

// ApplyCap resolves storage.max_size (ResolveCap), puts it in effect and
// says which cap applies, in the log and in CapNote. It returns the cap in
// bytes.
func (e *Evictor) ApplyCap(in CapInput) (int64, error) {
	n, note, err := ResolveCap(in)
	if err != nil {
		return 0, err
	}
	e.capNote.Store(&note)
	e.SetMaxSize(n)
	if n > 0 {
		e.cfg.Log.Info("cache cap applied", slog.String("cap", note), slog.Int64("max_size_bytes", n), slog.Float64("percent", in.Percent))
	} else {
		e.cfg.Log.Warn("no cache cap: "+note, slog.Float64("percent", in.Percent))
	}
	return n, nil
}

// CapNote is the cap ApplyCap applied, in words.
func (e *Evictor) CapNote() string {
	if p := e.capNote.Load(); p != nil {
		return *p
	}
	return ""
}
