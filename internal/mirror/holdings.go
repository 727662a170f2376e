package mirror

import (
	"context"

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
	if s.mem.holds(holdKey{rt.up.Name, rt.repo, d}) {
		return -1, nil
	}
	if ok, err := s.index.Holds(rt.up.Name, rt.repo, d); err != nil || ok {
		if ok {
			s.mem.putHolds(rt.up.Name, rt.repo, d)
		}
		return -1, err
	}
	if manifest {
		if _, err := rt.up.Client.ManifestHead(ctx, rt.repo, oci.Reference{Digest: d}, oci.ManifestMediaTypes); err != nil {
			return -1, err
		}
		// The upstream holds the manifest under this name, so it holds
		// what the manifest references (registries check that on push).
		return -1, s.recordManifestHeld(rt, d)
	}
	size, err := rt.up.Client.BlobHead(ctx, rt.repo, d)
	if err != nil {
		return -1, err
	}
	if err := s.index.PutHolds(rt.up.Name, rt.repo, d); err != nil {
		return size, err
	}
	s.mem.putHolds(rt.up.Name, rt.repo, d)
	return size, nil
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
