package mirror

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
)

// BlobSource makes the fill source of a blob of the cluster (see
// WithBlobSource): direct fetches from the upstream; fromPeer is set when
// another replica asked for the blob.
type BlobSource func(upstream, repo string, d digest.Digest, size int64, fromPeer bool, direct fill.Source) fill.Source

// WithBlobSource sets how a fill's source is chosen (default: the
// upstream). A cluster streams from the replica fetching the digest.
func WithBlobSource(fn BlobSource) Option { return func(s *Service) { s.sources = fn } }

// sourceFor is the fill source of d on the route.
func (s *Service) sourceFor(rt route, d digest.Digest, size int64, fromPeer bool) fill.Source {
	direct := s.blobSource(rt, d)
	if s.sources == nil {
		return direct
	}
	return s.sources(rt.up.Name, rt.repo, d, size, fromPeer, direct)
}

// PeerBlob serves another replica of the cluster: d from the store, or
// from this replica's fill of it, which is started from the upstream if
// none runs. The asking replica checked the client's access and the
// repository's holdings; the secret on the internal endpoint vouches for it.
func (s *Service) PeerBlob(ctx context.Context, upstream, repo string, d digest.Digest, size int64) (*Blob, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	up := s.byName[strings.ToLower(upstream)]
	if up == nil {
		return nil, fmt.Errorf("unknown upstream %q", upstream)
	}
	if err := oci.ValidateName(repo); err != nil {
		return nil, err
	}
	rt := route{up: up, repo: repo}
	if b := s.storedBlob(ctx, d); b != nil {
		return b, nil
	}
	rd, err := s.fills.OpenFrom(rt.up.Name, d, size, s.sourceFor(rt, d, size, true))
	if errors.Is(err, fill.ErrInStore) {
		if b := s.storedBlob(ctx, d); b != nil {
			return b, nil
		}
		return nil, fmt.Errorf("blob %s left the store while being opened", d)
	}
	if err != nil {
		return nil, err
	}
	return &Blob{Digest: d, fill: rd}, nil
}

// WithRedirect answers hits on blobs not on local disk with a redirect to
// the URL fn gives (storage.s3.redirect: a presigned GET).
func WithRedirect(fn func(ctx context.Context, d digest.Digest) (string, error)) Option {
	return func(s *Service) { s.redirect = fn }
}

// FlightLock runs fn on one replica of the cluster at a time for key; a
// replica that finds it running elsewhere waits for it to end and returns
// without running fn (it then reads what the other one recorded).
type FlightLock func(ctx context.Context, key string, fn func())

// WithFlightLock makes tag fetches, revalidations and manifest fetches by
// digest happen once across the cluster, not once per replica.
func WithFlightLock(fn FlightLock) Option { return func(s *Service) { s.flight = fn } }

// clusterOnce runs fn under the cluster's flight lock. When another replica
// ran it, after reads its result from the shared index; if that finds
// nothing, fn runs here.
func (s *Service) clusterOnce(ctx context.Context, key string, fn func() (any, error), after func() (any, bool)) (any, error) {
	if s.flight == nil {
		return fn()
	}
	var v any
	var err error
	ran := false
	s.flight(ctx, key, func() { ran = true; v, err = fn() })
	if ran {
		return v, err
	}
	if v, ok := after(); ok {
		return v, nil
	}
	return fn()
}

// sharedTag is a tag's entry as the whole cluster knows it: from the index
// when replicas share one (another may have checked it since this one
// remembered it), else as tag reads it.
func (s *Service) sharedTag(rt route, tag string) (cacheindex.TagEntry, bool, error) {
	if s.flight == nil {
		return s.tag(rt, tag)
	}
	e, ok, err := s.index.Tag(rt.up.Name, rt.repo, tag)
	if ok && err == nil {
		s.mem.putTag(tagKey{rt.up.Name, rt.repo, tag}, e)
	}
	return e, ok, err
}
