package cacheindex

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"
)

// Backend is what the content service and the cache's upkeep ask of an
// index. Two implementations: *Index (bbolt, one node) and
// redisindex.Index (Redis, shared by replicas). Both run indextest.Run.
//
// Every method that reads or writes entries takes the caller's ctx first:
// a shared index stops a call when ctx ends (its error is then ctx's), a
// local one may ignore it. Errors are the backend's own (I/O, connection,
// ctx); absence is a false "found", never an error.
type Backend interface {
	Tag(ctx context.Context, upstream, repo, tag string) (TagEntry, bool, error)
	PutTag(ctx context.Context, upstream, repo, tag string, e TagEntry) error
	DeleteTag(ctx context.Context, upstream, repo, tag string) error
	Tags(ctx context.Context, fn func(upstream, repo, tag string, e TagEntry) error) error

	Manifest(ctx context.Context, d digest.Digest) (ManifestEntry, bool, error)
	PutManifest(ctx context.Context, upstream, repo string, d digest.Digest, e ManifestEntry) error
	PutManifestEntry(ctx context.Context, d digest.Digest, e ManifestEntry) error
	// Manifests calls fn for every manifest entry (a shared index's scan
	// may give one twice).
	Manifests(ctx context.Context, fn func(digest.Digest, ManifestEntry) error) error

	Holds(ctx context.Context, upstream, repo string, d digest.Digest) (bool, error)
	PutHolds(ctx context.Context, upstream, repo string, d digest.Digest) error
	PutOrigin(ctx context.Context, upstream string, d digest.Digest) error
	HasOrigin(ctx context.Context, upstream string, d digest.Digest) (bool, error)

	Blob(ctx context.Context, d digest.Digest) (BlobEntry, bool, error)
	PutBlob(ctx context.Context, d digest.Digest, size int64) error
	DeleteBlob(ctx context.Context, d digest.Digest) error
	Blobs(ctx context.Context, fn func(digest.Digest, BlobEntry) error) error
	// Touch and TouchAll record accesses in memory (no I/O, so no ctx);
	// Flush writes them, and a background flush every period does too.
	Touch(d digest.Digest)
	TouchAll(ds []digest.Digest)
	Flush(ctx context.Context) error

	EvictionPlan(ctx context.Context, p EvictPolicy, now time.Time) (Plan, error)
	Reachable(ctx context.Context, keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error)

	// Close stops the background flush, flushes what is pending (bounded
	// by the backend's own timeout: it runs at shutdown, when no request
	// is left to give a ctx) and releases the index.
	Close() error
}

var _ Backend = (*Index)(nil)
