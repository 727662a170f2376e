package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
)

// ErrLocked means the data directory's index is held by another process,
// in practice a `regcache serve` running on it.
var ErrLocked = errors.New("index is locked by another process")

// Cache is a data directory opened without serving it, for the `regcache
// cache` commands. It holds the index's lock until Close, so it refuses to
// open (at once, with ErrLocked) while a server uses the directory, and no
// server can start on it meanwhile.
type Cache struct {
	dir   string
	store *disk.Store
	index *cacheindex.Index
	log   *slog.Logger
	ops   *Ops
}

// IndexFile is the embedded index inside a data directory.
func IndexFile(dir string) string { return filepath.Join(dir, "index.db") }

// Init creates the data directory dir with an empty index when it has
// none, for `cache import` into a mirror that never ran (an air-gapped
// site seeded from a bundle); an existing one is left as it is.
func Init(dir string) error {
	if _, err := os.Stat(IndexFile(dir)); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	index, err := cacheindex.Open(IndexFile(dir), time.Minute)
	if err != nil {
		return err
	}
	return index.Close()
}

// Open opens the data directory dir. It does not create one: a
// directory without an index is reported as such, since it is most likely
// the wrong directory.
func Open(dir string, log *slog.Logger) (*Cache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	path := IndexFile(dir)
	if err := checkUnlocked(path); err != nil {
		return nil, err
	}
	// The index first: disk.New removes temporary files, which would break
	// the fills of a server that started since the check.
	index, err := cacheindex.Open(path, time.Minute, cacheindex.WithLogger(log))
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, lockedError(path)
	}
	if err != nil {
		return nil, err
	}
	store, err := disk.New(dir)
	if err != nil {
		index.Close()
		return nil, err
	}
	if index.Damaged != "" {
		// As serve does: rebuild the index from the store.
		log.Error("the cache index was damaged; moved aside and rebuilt from the store", slog.String("moved_to", index.Damaged), slog.Any("damage", index.Damage))
		if err := Reconcile(context.Background(), store, index, log); err != nil {
			index.Close()
			return nil, fmt.Errorf("rebuild index: %w", err)
		}
	}
	c := &Cache{dir: dir, store: store, index: index, log: log}
	c.ops = NewOps(store, index, OpsConfig{Log: log})
	return c, nil
}

// checkUnlocked fails fast if path is missing or locked. bbolt would wait
// for the lock for the index's whole open timeout and then say "timeout".
func checkUnlocked(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no cache index at %s: is this the data directory regcache serve uses (its data setting, --data, REGCACHE_DATA)?", path)
	}
	if err != nil {
		return fmt.Errorf("open cache index: %w", err)
	}
	defer f.Close() // releases the probe's lock
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return lockedError(path)
		}
		return fmt.Errorf("lock cache index %s: %w", path, err)
	}
	return nil
}

func lockedError(path string) error {
	return fmt.Errorf("%s: %w, most likely a regcache serve using this data directory; "+
		"stop it first (the cache commands work on a directory no server uses), "+
		"or leave eviction to the running server (storage.max_size, storage.max_age) and watch it with `regcache status`", path, ErrLocked)
}

// Close releases the index and its lock.
func (c *Cache) Close() error { return c.index.Close() }

// Index is the cache's index, for listing.
func (c *Cache) Index() *cacheindex.Index { return c.index }

// Files counts the committed files of the store (blobs and manifests).
func (c *Cache) Files(ctx context.Context) (n int, size int64, err error) {
	err = c.store.Walk(ctx, func(_ digest.Digest, sz int64) error {
		n++
		size += sz
		return nil
	})
	return n, size, err
}

// VerifyReport is what Verify found and repaired.
type VerifyReport struct {
	Files int   // committed files hashed
	Bytes int64 // their total size
	// Corrupt files did not hash to their digest; they were quarantined
	// and their index entries dropped.
	Corrupt []digest.Digest
	// Dropped are index entries whose file was missing.
	Dropped []digest.Digest
	// Adopted are files the index did not know (committed just before a
	// crash): verified and indexed.
	Adopted []digest.Digest
}

// OK reports whether everything was as it should be. Adopted files are a
// normal leftover of a crash, not damage.
func (r VerifyReport) OK() bool { return len(r.Corrupt) == 0 && len(r.Dropped) == 0 }

// Verify hashes every committed file; a damaged one is quarantined and
// dropped from the index, so the mirror fetches it again instead of
// serving wrong bytes. Then the index is reconciled with the store as a
// server does at start-up after a crash. progress, if not nil, is told of
// each file hashed and each damage as it is found.
func (c *Cache) Verify(ctx context.Context, progress func(VerifyEvent)) (VerifyReport, error) {
	before, err := c.blobSet(ctx)
	if err != nil {
		return VerifyReport{}, err
	}
	r, err := c.ops.Verify(ctx, progress)
	if err != nil {
		return r, err
	}
	if err := Reconcile(ctx, c.store, c.index, c.log); err != nil {
		return r, err
	}
	after, err := c.blobSet(ctx)
	if err != nil {
		return r, err
	}
	for d := range after {
		if !before[d] {
			r.Adopted = append(r.Adopted, d)
		}
	}
	slices.Sort(r.Adopted)
	return r, nil
}

// blobSet is every blob and manifest the index holds.
func (c *Cache) blobSet(ctx context.Context) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	err := c.index.Blobs(ctx, func(d digest.Digest, _ cacheindex.BlobEntry) error {
		out[d] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = c.index.Manifests(ctx, func(d digest.Digest, _ cacheindex.ManifestEntry) error {
		out[d] = true
		return nil
	})
	return out, err
}

// List answers `cache ls` (see ListOptions).
func (c *Cache) List(ctx context.Context, opt ListOptions) (Listing, error) {
	return c.ops.List(ctx, opt)
}

// Remove answers `cache rm`.
func (c *Cache) Remove(ctx context.Context, req RemoveRequest) (RemoveResult, error) {
	return c.ops.Remove(ctx, req)
}

// Export answers `cache export`: a bundle of the tags, to w.
func (c *Cache) Export(ctx context.Context, w io.Writer, req ExportRequest) (BundleResult, error) {
	return c.ops.Export(ctx, w, req)
}

// Import answers `cache import`: a bundle from r into the data directory.
func (c *Cache) Import(ctx context.Context, r io.Reader) (BundleResult, error) {
	return c.ops.Import(ctx, r)
}

// Invalidate answers `cache invalidate`.
func (c *Cache) Invalidate(ctx context.Context, req InvalidateRequest) (InvalidateResult, error) {
	return c.ops.Invalidate(ctx, req)
}

// Prune answers `cache prune`. Offline nothing is protected: whether an
// upstream is reachable is not known here.
func (c *Cache) Prune(ctx context.Context, req PruneRequest) (PruneResult, error) {
	return c.ops.Prune(ctx, req)
}

// Stats answers `cache stats`.
func (c *Cache) Stats(ctx context.Context) (CacheStats, error) { return c.ops.Stats(ctx) }

// TagRef names one tag entry of the index.
type TagRef struct {
	Upstream, Repository, Tag string
}

func (t TagRef) String() string { return t.Upstream + "/" + t.Repository + ":" + t.Tag }
