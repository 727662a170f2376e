package mirror

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
)

// confirmHeld makes sure the repository is known to hold d before content
// cached for any repository is served under its name: one of its manifests
// references d, or the upstream confirms it with a HEAD under that name.
// Knowing a private layer's digest must not unlock it under another name.
// For a blob it returns the size the upstream's HEAD gave, or -1 when no
// HEAD was needed.
func (s *Service) confirmHeld(ctx context.Context, rt route, d digest.Digest, manifest bool) (int64, error) {
	held := s.mem.holds(holdKey{rt.up.Name, rt.repo, d})
	if !held {
		ok, err := s.index.Holds(rt.up.Name, rt.repo, d)
		if err != nil {
			return -1, err
		}
		held = ok
	}
	size := int64(-1)
	if !held {
		kind := fallbackBlob
		if manifest {
			kind = fallbackManifest
		}
		_, err := s.onChain(ctx, rt, kind, func(r route) error {
			var err error
			if manifest {
				_, err = r.up.Client.ManifestHead(ctx, r.repo, oci.Reference{Digest: d}, oci.ManifestMediaTypes)
			} else {
				size, err = r.up.Client.BlobHead(ctx, r.repo, d)
			}
			return err
		})
		if err != nil {
			return -1, err
		}
	}
	// Held or not, bytes another upstream served are served under this
	// upstream's name only once it served them too: a manifest of its own
	// that names a digest is its word, as a HEAD is.
	if err := s.confirmOrigin(ctx, rt, d, manifest); err != nil {
		return -1, err
	}
	switch {
	case held:
		s.mem.putHolds(rt.up.Name, rt.repo, d)
		return size, nil
	case manifest:
		// The upstream holds the manifest under this name, so it holds
		// what the manifest references (registries check that on push).
		return size, s.recordManifestHeld(rt, d)
	}
	if err := s.index.PutHolds(rt.up.Name, rt.repo, d); err != nil {
		return size, err
	}
	s.mem.putHolds(rt.up.Name, rt.repo, d)
	return size, nil
}

// confirmOrigin makes sure content another upstream served is unlocked
// under this upstream's name only if this upstream serves the same bytes:
// a HEAD answering 200 is its word, not proof (a hostile or careless
// upstream answers 200 for any digest). With one upstream, or when this
// upstream served the bytes before, or when d is not stored (a reader
// joins only its own upstream's fill, so the bytes will come from this
// upstream), there is nothing to check. Otherwise the content is fetched from this upstream by digest
// and verified, and the upstream is recorded as one of its origins.
func (s *Service) confirmOrigin(ctx context.Context, rt route, d digest.Digest, manifest bool) error {
	if len(s.upstreams) < 2 {
		return nil
	}
	// A member of the upstream's fallback chain serving the bytes is as
	// good: the operator made it stand in for the upstream.
	if ok, err := s.originOnChain(rt, d); err != nil || ok {
		return err
	}
	stored := int64(-1)
	if !manifest { // manifests are checked whenever asked: memory may hold one the store lost
		n, err := s.store.Stat(ctx, d)
		if err != nil {
			// Not stored: this upstream's own fill will fetch it (fills
			// are per upstream); servableBlob checks again if a commit
			// from elsewhere lands first.
			return nil
		}
		stored = n
	}
	// One verification per (upstream, repository, digest) at a time, detached from the
	// client that asked (others wait on the same answer).
	_, err, _ := s.flights.Do("verify\x00"+rt.up.Name+"\x00"+rt.repo+"\x00"+d.String(), func() (any, error) {
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
		defer cancel()
		if manifest { // ManifestGet checks the body against the digest
			_, err := rt.up.Client.ManifestGet(vctx, rt.repo, oci.Reference{Digest: d}, oci.ManifestMediaTypes)
			return nil, err
		}
		return nil, s.verifyBlobAt(vctx, rt, d, stored)
	})
	if err != nil {
		return err
	}
	s.log.Info("content cached from another upstream confirmed by this one's own bytes",
		slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.String("digest", d.String()))
	return s.putOrigin(rt, d)
}

// putOrigin records that the route's upstream served d's bytes.
func (s *Service) putOrigin(rt route, d digest.Digest) error {
	if err := s.index.PutOrigin(rt.up.Name, d); err != nil {
		return err
	}
	s.mem.putOrigin(rt.up.Name, d)
	return nil
}

// verifyTimeout bounds one verifying download of content another upstream
// served.
const verifyTimeout = 30 * time.Minute

// verifyBlobAt streams the blob from the route's upstream through a hash
// and checks it is d (and size bytes, when the store knows the size),
// reading at most one byte past that size.
func (s *Service) verifyBlobAt(ctx context.Context, rt route, d digest.Digest, size int64) error {
	b, err := rt.up.Client.BlobGet(ctx, rt.repo, d, 0)
	if err != nil {
		return err
	}
	defer b.Body.Close()
	if b.Offset != 0 {
		return fmt.Errorf("upstream %s answered blob %s from offset %d", rt.up.Name, d, b.Offset)
	}
	h := d.Algorithm().Digester()
	var body io.Reader = b.Body
	if size > 0 {
		body = io.LimitReader(b.Body, size+1)
	}
	n, err := io.Copy(h.Hash(), body)
	switch {
	case err != nil:
		return fmt.Errorf("verify blob %s at %s: %w", d, rt.up.Name, err)
	case size > 0 && n != size, h.Digest() != d:
		return oci.Errorf(oci.ErrBlobUnknown, "upstream %s says it holds %s under %s but serves other bytes", rt.up.Name, d, rt.repo)
	}
	return nil
}

// recordManifestHeld records that the repository holds a stored manifest
// and everything it references.
func (s *Service) recordManifestHeld(rt route, d digest.Digest) error {
	e, ok, err := s.index.Manifest(d)
	if err != nil || !ok {
		return err
	}
	return s.putManifestEntry(rt, d, e)
}

// putManifestEntry records a stored manifest and what the repository
// holds with it, in the index and then in memory.
func (s *Service) putManifestEntry(rt route, d digest.Digest, e cacheindex.ManifestEntry) error {
	if err := s.index.PutManifest(rt.up.Name, rt.repo, d, e); err != nil {
		return err
	}
	s.mem.putHolds(rt.up.Name, rt.repo, append([]digest.Digest{d}, e.Refs...)...)
	return nil
}
