package mirror

import (
	"context"
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
)

// Index is what the content service asks of the cache index on the read
// path (cacheindex.Backend has it all; a test may give less). Absence is a
// false "found", never an error.
type Index interface {
	Tag(ctx context.Context, upstream, repo, tag string) (cacheindex.TagEntry, bool, error)
	PutTag(ctx context.Context, upstream, repo, tag string, e cacheindex.TagEntry) error
	Manifest(ctx context.Context, d digest.Digest) (cacheindex.ManifestEntry, bool, error)
	PutManifest(ctx context.Context, upstream, repo string, d digest.Digest, e cacheindex.ManifestEntry) error
	Holds(ctx context.Context, upstream, repo string, d digest.Digest) (bool, error)
	PutHolds(ctx context.Context, upstream, repo string, d digest.Digest) error
	PutOrigin(ctx context.Context, upstream string, d digest.Digest) error
	HasOrigin(ctx context.Context, upstream string, d digest.Digest) (bool, error)
	Blob(ctx context.Context, d digest.Digest) (cacheindex.BlobEntry, bool, error)
	PutBlob(ctx context.Context, d digest.Digest, size int64) error
	DeleteBlob(ctx context.Context, d digest.Digest) error
	Touch(d digest.Digest)
	TouchAll(ds []digest.Digest)
}

var _ Index = cacheindex.Backend(nil)

// WithCommitted sets what is told, after the index has it, of each blob a
// fill committed: its size (the app's nudge for eviction). Nothing else of
// the fill's index writes is the caller's: New installs them.
func WithCommitted(fn func(size int64)) Option { return func(s *Service) { s.committed = fn } }

// recordFills makes the fill manager's findings the index's: a verified
// blob's origin before its commit shows it (a request under that
// upstream's name must not find it stored without its origin), and its
// size once committed. The content service is the only writer of the
// index on the read path; the fills' writes are its own.
func (s *Service) recordFills() {
	s.fills.SetHooks(fill.Hooks{
		Verified: func(ctx context.Context, d digest.Digest, origin string) {
			if err := s.index.PutOrigin(ctx, origin, d); err != nil {
				s.log.Error("index blob origin", slog.String("digest", d.String()), slog.Any("error", err))
			}
		},
		Committed: func(ctx context.Context, d digest.Digest, size int64) {
			if err := s.index.PutBlob(ctx, d, size); err != nil {
				s.log.Error("index blob", slog.String("digest", d.String()), slog.Any("error", err))
			}
			if s.committed != nil {
				s.committed(size)
			}
		},
	})
}
