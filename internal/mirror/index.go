package mirror

import (
	"log/slog"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
)

// Index is what the content service asks of the cache index on the read
// path (cacheindex.Backend has it all; a test may give less). Absence is a
// false "found", never an error.
type Index interface {
	Tag(upstream, repo, tag string) (cacheindex.TagEntry, bool, error)
	PutTag(upstream, repo, tag string, e cacheindex.TagEntry) error
	Manifest(d digest.Digest) (cacheindex.ManifestEntry, bool, error)
	PutManifest(upstream, repo string, d digest.Digest, e cacheindex.ManifestEntry) error
	Holds(upstream, repo string, d digest.Digest) (bool, error)
	PutHolds(upstream, repo string, d digest.Digest) error
	PutOrigin(upstream string, d digest.Digest) error
	HasOrigin(upstream string, d digest.Digest) (bool, error)
	Blob(d digest.Digest) (cacheindex.BlobEntry, bool, error)
	PutBlob(d digest.Digest, size int64) error
	DeleteBlob(d digest.Digest) error
	Touch(d digest.Digest)
	TouchAll(ds []digest.Digest)
}

var _ Index = cacheindex.Backend(nil)

// FillIndexing is the fill manager's index writes, which the content
// service owns (it is the only writer of the index on the read path): a
// verified blob's origin before its commit shows it (a request under that
// upstream's name must not find it stored without its origin), and its
// size once committed. committed, if not nil, is told of each commit's
// size after the index has it (the app's eviction nudge).
func FillIndexing(index Index, log *slog.Logger, committed func(size int64)) []fill.Option {
	return []fill.Option{
		fill.WithOnVerified(func(d digest.Digest, origin string) {
			if err := index.PutOrigin(origin, d); err != nil {
				log.Error("index blob origin", slog.String("digest", d.String()), slog.Any("error", err))
			}
		}),
		fill.WithOnCommit(func(d digest.Digest, size int64) {
			if err := index.PutBlob(d, size); err != nil {
				log.Error("index blob", slog.String("digest", d.String()), slog.Any("error", err))
			}
			if committed != nil {
				committed(size)
			}
		}),
	}
}
