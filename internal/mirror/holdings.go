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
//
// While the upstream fails, a member of its fallback chain may answer
// instead; what the member shows (its HEAD, its manifests) is recorded
// under the member's name, never as the upstream's holdings, and unlocks
// stored content only once the member has served those bytes itself: a
// member supplies bytes, it does not vouch for the upstream's.
func (s *Service) confirmHeld(ctx context.Context, rt route, d digest.Digest, manifest bool) (int64, error) {
	held, err := s.holdsAt(ctx, rt, d)
	if err != nil {
		return -1, err
	}
	size := int64(-1)
	by := rt // who showed that the repository holds d
	if !held {
		kind := fallbackBlob
		if manifest {
			kind = fallbackManifest
		}
		by, err = s.onChain(ctx, rt, kind, func(r route) error {
			if r.up != rt.up { // a member: what it showed before stands
				if ok, err := s.holdsAt(ctx, r, d); err != nil || ok {
					return err
				}
			}
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
	if by.up != rt.up {
		// Only bytes the member itself serves under this name.
		if err := s.confirmOriginAt(ctx, by, d, manifest, false); err != nil {
			return -1, err
		}
		return size, s.recordHeld(ctx, by, d, manifest)
	}
	// Held or not, bytes another upstream served are served under this
	// upstream's name only once it served them too: a manifest of its own
	// that names a digest is its word, as a HEAD is.
	if err := s.confirmOrigin(ctx, rt, d, manifest); err != nil {
		return -1, err
	}
	if held {
		s.mem.putHolds(rt.up.Name, rt.repo, d)
		return size, nil
	}
	return size, s.recordHeld(ctx, rt, d, manifest)
}

// holdsAt reports whether the route's repository is known to hold d.
func (s *Service) holdsAt(ctx context.Context, rt route, d digest.Digest) (bool, error) {
	if s.mem.holds(holdKey{rt.up.Name, rt.repo, d}) {
		return true, nil
	}
	return s.index.Holds(ctx, rt.up.Name, rt.repo, d)
}

// recordHeld records that the route's repository holds d, as its upstream
// showed. A manifest: the upstream holds it under this name, so it holds
// what the manifest references (registries check that on push).
func (s *Service) recordHeld(ctx context.Context, rt route, d digest.Digest, manifest bool) error {
	if manifest {
		return s.recordManifestHeld(ctx, rt, d)
	}
	if err := s.index.PutHolds(ctx, rt.up.Name, rt.repo, d); err != nil {
		return err
	}
	s.mem.putHolds(rt.up.Name, rt.repo, d)
	return nil
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
	return s.confirmOriginAt(ctx, rt, d, manifest, true)
}

// confirmOriginAt is confirmOrigin; with chain, bytes a member of the
// route's fallback chain served count as the route's (the operator made
// it stand in for the upstream). Without, only the route's own upstream's.
func (s *Service) confirmOriginAt(ctx context.Context, rt route, d digest.Digest, manifest, chain bool) error {
	if len(s.upstreams) < 2 {
		return nil
	}
	ups := []*Upstream{rt.up}
	if chain {
		ups = append(ups, s.fallbacks(rt.up)...)
	}
	if ok, err := s.originAmong(ctx, ups, d); err != nil || ok {
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
	return s.putOrigin(ctx, rt, d)
}

// putOrigin records that the route's upstream served d's bytes.
func (s *Service) putOrigin(ctx context.Context, rt route, d digest.Digest) error {
	if err := s.index.PutOrigin(ctx, rt.up.Name, d); err != nil {
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
func (s *Service) recordManifestHeld(ctx context.Context, rt route, d digest.Digest) error {
	e, ok, err := s.index.Manifest(ctx, d)
	if err != nil || !ok {
		return err
	}
	return s.putManifestEntry(ctx, rt, d, e)
}

// putManifestEntry records a stored manifest and what the repository
// holds with it, in the index and then in memory.
func (s *Service) putManifestEntry(ctx context.Context, rt route, d digest.Digest, e cacheindex.ManifestEntry) error {
	if err := s.index.PutManifest(ctx, rt.up.Name, rt.repo, d, e); err != nil {
		return err
	}
	s.mem.putHolds(rt.up.Name, rt.repo, append([]digest.Digest{d}, e.Refs...)...)
	return nil
}
