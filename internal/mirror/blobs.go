package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// Blob is a blob ready to send: committed in the store, growing in its
// fill, streamed from the upstream without caching, or (for a HEAD of a
// blob not stored) only its size. Close it.
type Blob struct {
	Digest digest.Digest
	body   blobBody
	// redirect is a short-lived URL the client may fetch the stored bytes
	// from itself (a presigned S3 GET), "" when it is served here.
	redirect string
}

// blobBody is what a Blob sends: a *fill.Reader (the blob committed in the
// store, or growing in its fill), a *fill.Passthrough (the upstream's body,
// not stored), or headOnly. fill.Reader.Send says what each answer
// guarantees.
type blobBody interface {
	// Size waits for the size to be known; -1 if the upstream did not say.
	Size(ctx context.Context) (int64, error)
	// Send writes length bytes from start to w (to the end when length is
	// -1). An error means w got less than asked: the answer must be cut.
	Send(ctx context.Context, w io.Writer, start, length int64) error
	// Rereadable reports whether Send may be called more than once.
	Rereadable() bool
	Close() error
}

var (
	_ blobBody = (*fill.Reader)(nil)
	_ blobBody = (*fill.Passthrough)(nil)
	_ blobBody = headOnly(0)
)

// headOnly is a blob known by its size alone (a HEAD of a blob not stored).
type headOnly int64

func (h headOnly) Size(context.Context) (int64, error) { return int64(h), nil }
func (headOnly) Rereadable() bool                      { return true }
func (headOnly) Close() error                          { return nil }
func (headOnly) Send(context.Context, io.Writer, int64, int64) error {
	return errors.New("blob has no content to send (headers only)")
}

// NewBlob is an answer that sends d from body: a *fill.Reader (the blob
// committed in the store, or growing in its fill) or a *fill.Passthrough
// (the upstream's body, not stored); inside the service also a size alone
// (headOnly) or the canary's bytes. Every Blob the service answers is made
// here, and so are a fake content service's.
func NewBlob(d digest.Digest, body blobBody) *Blob { return &Blob{Digest: d, body: body} }

// RedirectURL is where the client may fetch a stored blob itself, or ""
// when the blob is sent by Send.
func (b *Blob) RedirectURL() string { return b.redirect }

// Size is the blob's size, waiting for a fill to learn it from the
// upstream's headers; -1 if the upstream did not say.
func (b *Blob) Size(ctx context.Context) (int64, error) {
	n, err := b.body.Size(ctx)
	return n, wire(err, oci.ErrBlobUnknown)
}

// Send writes length bytes of the blob from start to w (all from start if
// length is -1), as fill.Reader.Send describes: an answer that ends at the
// blob's end completes only once the blob is verified; a partial range
// short of the end is sent as its bytes arrive. An error means w got less
// than asked: the response must be cut, not completed.
func (b *Blob) Send(ctx context.Context, w io.Writer, start, length int64) error {
	return b.body.Send(ctx, w, start, length)
}

// Rereadable reports whether Send may be called more than once (for the
// parts of a multi-range answer): not for a blob streamed from the
// upstream without caching, whose body is read once.
func (b *Blob) Rereadable() bool { return b.body.Rereadable() }

// Close releases the stored file, the reader of the fill (the fill goes on
// for its other readers) or the upstream body.
func (b *Blob) Close() error { return b.body.Close() }

// Blob answers a blob request. Content cached or being fetched for another
// repository is served under this name only if this repository holds it.
// A GET opens the digest's fill, which answers the committed blob when the
// store has it (one store lookup), else joins or starts the one fill; a
// HEAD of a blob not stored asks the upstream for the size only.
func (s *Service) Blob(ctx context.Context, req Request, d digest.Digest) (*Blob, Outcome, error) {
	if s.isCanary(req) {
		return canaryBlob(req, d)
	}
	var out Outcome
	rt, err := s.route(req)
	if err != nil {
		return nil, out, err
	}
	if err := s.checkBlobPolicy(req, rt, d); err != nil {
		return nil, out, err
	}
	headSize, err := s.confirmHeld(ctx, rt, d, false)
	if err != nil {
		return nil, out, wire(err, oci.ErrBlobUnknown)
	}
	if req.Head {
		if b, err := s.servableBlob(ctx, rt, d); err != nil || b != nil {
			out.Cache = CacheHit
			return b, out, wire(err, oci.ErrBlobUnknown)
		}
		out.Cache = CacheMiss
		size := headSize
		if size < 0 { // held, but not asked yet
			if _, err := s.onChain(ctx, rt, fallbackBlob, func(r route) error {
				var err error
				size, err = r.up.Client.BlobHead(ctx, r.repo, d)
				return err
			}); err != nil {
				return nil, out, wire(err, oci.ErrBlobUnknown)
			}
		}
		return NewBlob(d, headOnly(size)), out, nil
	}
	// A known size (the upstream's HEAD, or a manifest of this upstream
	// listing the blob) cuts the fill there: a longer or shorter body fails
	// with nothing cached.
	size := headSize
	if size < 0 {
		if n, ok := s.mem.blobSize(rt.up.Name, rt.repo, d); ok {
			size = n
		}
	}
	rd, err := s.openFill(ctx, rt, d, size, false)
	if unwritable(err) {
		out.Cache = CacheMiss
		// The store cannot take it (a read-only directory): serve the
		// upstream's bytes, verified, without caching them.
		s.log.Error("cache directory is not writable; serving the blob without caching it", slog.String("digest", d.String()), slog.Any("error", err))
		ub, err := rt.up.Client.BlobGet(ctx, rt.repo, d, 0)
		if err != nil {
			return nil, out, wire(err, oci.ErrBlobUnknown)
		}
		if ub.Offset != 0 {
			ub.Body.Close()
			return nil, out, oci.Errorf(oci.ErrUnavailable, "the upstream answered from byte %d", ub.Offset)
		}
		return NewBlob(d, fill.NewPassthrough(d, ub)), out, nil
	}
	if err != nil {
		out.Cache = CacheMiss
		return nil, out, wire(err, oci.ErrBlobUnknown)
	}
	if rd.Stored() != nil {
		out.Cache = CacheHit
		b, err := s.servable(ctx, rt, d, rd)
		return b, out, wire(err, oci.ErrBlobUnknown)
	}
	out.Cache, out.Joined = CacheMiss, rd.Joined()
	rd.FetchRanges(func(ctx context.Context, start, length int64) (body io.ReadCloser, err error) {
		_, err = s.onChain(ctx, rt, fallbackBlob, func(r route) error {
			body, err = r.up.Client.BlobRange(ctx, r.repo, d, start, length)
			return err
		})
		return body, err
	})
	return NewBlob(d, rd), out, nil
}

// openFill opens d for the route through its fill: the committed blob when
// the store has it (its size checked against the index), else a reader of
// the running fill, joined or started.
func (s *Service) openFill(ctx context.Context, rt route, d digest.Digest, size int64, fromPeer bool) (*fill.Reader, error) {
	for range 2 { // a damaged stored file is dropped once, then fetched again
		rd, err := s.fills.OpenFrom(rt.up.Name, d, size, s.sourceFor(rt, d, size, fromPeer), s.segments(rt, d)...)
		if err != nil || rd.Stored() == nil || s.intact(ctx, d, rd) {
			return rd, err
		}
	}
	return nil, oci.Errorf(oci.ErrUnavailable, "blob %s is damaged in the cache and could not be dropped; retry", d)
}

// PeerBlob serves another replica of the cluster: d from the store, or
// from this replica's fill of it, which is started from the upstream if
// none runs. The asking replica checked the client's access and the
// repository's holdings; the secret on the internal endpoint vouches for it.
func (s *Service) PeerBlob(ctx context.Context, upstream, repo string, d digest.Digest, size int64) (*fill.Reader, error) {
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
	return s.openFill(ctx, route{up: up, repo: repo}, d, size, true)
}

// servableBlob opens a committed blob for the route (nil if there is
// none), as servable checks it.
func (s *Service) servableBlob(ctx context.Context, rt route, d digest.Digest) (*Blob, error) {
	b, err := s.store.Open(ctx, d)
	if err != nil {
		return nil, nil
	}
	rd := fill.FromStore(b)
	if !s.intact(ctx, d, rd) {
		return nil, nil
	}
	return s.servable(ctx, rt, d, rd)
}

// servable makes a committed blob an answer for the route, after making
// sure the route's upstream served its bytes: content stored from another
// upstream is verified there first. The check runs here, where the stored
// file is about to be served, so a commit from another upstream between
// the holdings check and this point cannot slip through.
func (s *Service) servable(ctx context.Context, rt route, d digest.Digest, rd *fill.Reader) (*Blob, error) {
	if err := s.confirmOrigin(ctx, rt, d, false); err != nil {
		rd.Close()
		return nil, err
	}
	out := NewBlob(d, rd)
	if _, local := rd.Stored().(interface{ OSFile() *os.File }); s.redirect != nil && !local {
		// In the shared store, not on this replica's disk: the client
		// fetches it there.
		if u, err := s.redirect(ctx, d); err == nil {
			out.redirect = u
		} else {
			s.log.Warn("presign blob redirect; streaming it instead", slog.String("digest", d.String()), slog.Any("error", err))
		}
	}
	return out, nil
}

// intact reports whether a committed blob's file has the size recorded
// when it was committed, and records the access. A damaged file (truncated
// or grown on disk) is closed and dropped, so the caller fetches it again
// instead of serving it.
func (s *Service) intact(ctx context.Context, d digest.Digest, rd *fill.Reader) bool {
	size := rd.Stored().Size()
	if e, ok, err := s.index.Blob(ctx, d); err == nil && ok && e.Size != size {
		rd.Close()
		s.dropDamaged(ctx, d, fmt.Sprintf("%d bytes on disk, %d when committed", size, e.Size))
		return false
	}
	s.index.Touch(d)
	return true
}

// dropDamaged removes a cached file found damaged on disk, and its index
// entries, so the next request fetches a good copy.
func (s *Service) dropDamaged(ctx context.Context, d digest.Digest, why string) {
	ctx = context.WithoutCancel(ctx) // a repair begun is finished, whoever asked
	s.log.Error("a cached file is damaged on disk; dropped, the next request fetches it again",
		slog.String("digest", d.String()), slog.String("damage", why))
	if err := s.store.Delete(ctx, d); err != nil {
		s.log.Error("drop damaged file", slog.String("digest", d.String()), slog.Any("error", err))
	}
	if err := s.index.DeleteBlob(ctx, d); err != nil {
		s.log.Error("drop damaged file's index entry", slog.String("digest", d.String()), slog.Any("error", err))
	}
	s.mem.forget(d)
}

// segments lets a fill of d on the route fetch a large blob over the
// upstream's fill_connections at once, as ranges from the upstream or a
// member of its fallback chain. A cluster's fills go over one stream:
// their bytes may come from the replica that owns the digest.
func (s *Service) segments(rt route, d digest.Digest) []fill.StartOption {
	n := rt.up.Client.FillConnections()
	if s.sources != nil || n <= 1 {
		return nil
	}
	return []fill.StartOption{fill.Segmented(func(ctx context.Context, start, length int64) (b *upstream.Blob, err error) {
		_, err = s.onChain(ctx, rt, fallbackBlob, func(r route) error {
			b, err = r.up.Client.BlobSegment(ctx, r.repo, d, start, length)
			return err
		})
		return b, err
	}, n)}
}

// blobSource fetches the blob from the route's upstream, or from a member
// of its fallback chain when it is down, 5xx or rate limited (the fill
// checks the bytes against the digest, and records who served them).
func (s *Service) blobSource(rt route, d digest.Digest) fill.Source {
	return func(ctx context.Context, offset int64) (b *upstream.Blob, err error) {
		_, err = s.onChain(ctx, rt, fallbackBlob, func(r route) error {
			b, err = r.up.Client.BlobGet(ctx, r.repo, d, offset)
			return err
		})
		return b, err
	}
}
