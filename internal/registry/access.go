package registry

import (
	"context"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
)

// Authorizer decides whether a request may read a repository. It runs after
// routing and before any I/O for the repository. A non-nil error is sent as
// the answer (an *oci.Error with UNAUTHORIZED or DENIED); an Authorizer may
// set headers such as WWW-Authenticate on w before returning it.
type Authorizer interface {
	Authorize(w http.ResponseWriter, r *http.Request, upstream *Upstream, repo string) error
}

// WithAuthorizer sets the access check (default: everyone may read).
func WithAuthorizer(a Authorizer) Option { return func(s *Server) { s.authz = a } }

// confirmHeld makes sure the repository is known to hold d before content
// cached for any repository is served under its name: one of its manifests
// references d, or the upstream confirms it with a HEAD under that name.
// Knowing a private layer's digest must not unlock it under another name.
// For a blob it returns the size the upstream's HEAD gave, or -1 when no
// HEAD was needed.
func (s *Server) confirmHeld(ctx context.Context, rt route, d digest.Digest, manifest bool) (int64, error) {
	if ok, err := s.index.Holds(rt.up.Name, rt.repo, d); err != nil || ok {
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
	return size, s.index.PutHolds(rt.up.Name, rt.repo, d)
}

// recordManifestHeld records that the repository holds a stored manifest
// and everything it references.
func (s *Server) recordManifestHeld(rt route, d digest.Digest) error {
	e, ok, err := s.index.Manifest(d)
	if err != nil || !ok {
		return err
	}
	return s.index.PutManifest(rt.up.Name, rt.repo, d, e)
}
