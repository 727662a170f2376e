package cacheindex

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Backend is what the content service and the app ask of an index. Two
// implementations: *Index (bbolt, one node) and redisindex.Index (Redis,
// shared by replicas). Both run indextest.Run. Errors are the backend's
// own (I/O, connection); absence is a false "found", never an error.
type Backend interface {
	Tag(upstream, repo, tag string) (TagEntry, bool, error)
	PutTag(upstream, repo, tag string, e TagEntry) error
	DeleteTag(upstream, repo, tag string) error
	Tags(fn func(upstream, repo, tag string, e TagEntry) error) error

	Manifest(d digest.Digest) (ManifestEntry, bool, error)
	PutManifest(upstream, repo string, d digest.Digest, e ManifestEntry) error
	PutManifestEntry(d digest.Digest, e ManifestEntry) error
	// Manifests calls fn for every manifest entry (a shared index's scan
	// may give one twice).
	Manifests(fn func(digest.Digest, ManifestEntry) error) error

	Holds(upstream, repo string, d digest.Digest) (bool, error)
	PutHolds(upstream, repo string, d digest.Digest) error
	PutOrigin(upstream string, d digest.Digest) error
	HasOrigin(upstream string, d digest.Digest) (bool, error)

	Blob(d digest.Digest) (BlobEntry, bool, error)
	PutBlob(d digest.Digest, size int64) error
	DeleteBlob(d digest.Digest) error
	Blobs(fn func(digest.Digest, BlobEntry) error) error
	// Touch and TouchAll record accesses in memory; Flush writes them.
	Touch(d digest.Digest)
	TouchAll(ds []digest.Digest)
	Flush() error

	EvictionPlan(p EvictPolicy, now time.Time) (Plan, error)
	Reachable(keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error)

	Close() error
}

var _ Backend = (*Index)(nil)
