package cache

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
)

// Reconcile makes the index and a node's own store agree after a crash
// (or with a new or rebuilt index): index entries whose files are gone are
// dropped; files the index does not know (committed just before a crash)
// are verified and adopted, or set aside. Temporary files were already
// removed when the store opened. A store shared by replicas (S3) has no
// local crash to repair: the server does not call it there.
func Reconcile(ctx context.Context, store blobstore.Store, index cacheindex.Backend, log *slog.Logger) error {
	var gone []digest.Digest
	err := index.Blobs(ctx, func(d digest.Digest, _ cacheindex.BlobEntry) error {
		if _, err := store.Stat(ctx, d); err != nil {
			gone = append(gone, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile index: %w", err)
	}
	for _, d := range gone {
		if err := index.DeleteBlob(ctx, d); err != nil {
			return err
		}
	}
	type file struct {
		d    digest.Digest
		size int64
	}
	var orphans []file
	err = store.Walk(ctx, func(d digest.Digest, size int64) error {
		_, isBlob, _ := index.Blob(ctx, d)
		_, isManifest, _ := index.Manifest(ctx, d)
		if !isBlob && !isManifest {
			orphans = append(orphans, file{d, size})
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile store: %w", err)
	}
	if bi, ok := index.(*cacheindex.Index); ok && bi.Damaged != "" {
		log.Error("the cache index was damaged; moved aside and rebuilt from the store (every file verified; tags are fetched again on demand)",
			slog.String("moved_to", bi.Damaged), slog.Any("damage", bi.Damage), slog.Int("files", len(orphans)))
	}
	adopted := 0
	for _, f := range orphans {
		if err := verify(ctx, store, f.d, f.size, nil); err != nil {
			where, _ := setAside(ctx, store, f.d)
			log.Warn("set aside a cache file that failed verification", slog.String("digest", f.d.String()), slog.String("quarantine", where), slog.Any("error", err))
			continue
		}
		if err := adopt(ctx, store, index, f.d, f.size); err != nil {
			return err
		}
		adopted++
	}
	if len(gone) > 0 || len(orphans) > 0 {
		log.Info("reconciled cache after restart", slog.Int("dropped_entries", len(gone)), slog.Int("orphans_adopted", adopted), slog.Int("orphans_removed", len(orphans)-adopted))
	}
	return nil
}

// adopt records a verified file the index does not know: a manifest (its
// media type and references restored; no repository holds it until an
// upstream confirms one) or a blob.
func adopt(ctx context.Context, store blobstore.Store, index cacheindex.Backend, d digest.Digest, size int64) error {
	if size <= oci.MaxManifestSize {
		if b, err := store.Open(ctx, d); err == nil {
			body, rerr := io.ReadAll(io.LimitReader(b, oci.MaxManifestSize))
			b.Close()
			if mt, ok := oci.SniffManifest(body); rerr == nil && ok {
				return index.PutManifestEntry(ctx, d, cacheindex.ManifestEntry{MediaType: mt, Size: size, Refs: oci.References(body)})
			}
		}
	}
	return index.PutBlob(ctx, d, size)
}
