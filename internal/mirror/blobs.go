package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// Blob is a blob ready to send: committed in the store, growing in its
// fill, or (for a HEAD of a blob not stored) only its size. Close it.
type Blob struct {
	Digest digest.Digest
	size   int64 // when neither stored nor fill is set; -1 unknown
	stored blobstore.Blob
	fill   *fill.Reader
	pass   *upstream.Blob // streamed from upstream, not cached (unwritable store)
	// upstreamRange fetches a range of a blob being filled from the
	// upstream, for a range the fill will not reach soon.
	upstreamRange func(ctx context.Context, start, length int64) (io.ReadCloser, error)
	// redirect is a short-lived URL the client may fetch the stored bytes
	// from itself (a presigned S3 GET), "" when it is served here.
	redirect string
}

// RedirectURL is where the client may fetch a stored blob itself, or ""
// when the blob is sent by Send.
func (b *Blob) RedirectURL() string { return b.redirect }

// Size is the blob's size, waiting for a fill to learn it from the
// upstream's headers; -1 if the upstream did not say.
func (b *Blob) Size(ctx context.Context) (int64, error) {
	switch {
	case b.stored != nil:
		return b.stored.Size(), nil
	case b.fill != nil:
		n, err := b.fill.Size(ctx)
		return n, wire(err, oci.ErrBlobUnknown)
	case b.pass != nil:
		return b.pass.Size, nil
	}
	return b.size, nil
}

// Send writes length bytes of the blob from start to w (all from start if
// length is -1). A stored blob goes by sendfile(2) when w can take a file.
// Of a growing blob, the whole blob's last byte waits for the blob's
// verification, so a full response never completes with bytes no one has
// checked; a partial range is sent as its bytes arrive, or fetched from
// the upstream as a range when the fill will not reach its start soon (a
// part of a blob cannot be verified: the client checks its chunks). An error
// means w got less than asked: the response must be cut, not completed.
func (b *Blob) Send(ctx context.Context, w io.Writer, start, length int64) error {
	switch {
	case b.stored != nil:
		return sendStored(b.stored, w, start, length)
	case b.fill != nil:
		if size, err := b.fill.Size(ctx); err == nil && size >= 0 && length >= 0 && (start > 0 || length < size) {
			return b.sendFillRange(ctx, w, start, length)
		}
		if _, err := b.fill.Seek(start, io.SeekStart); err != nil {
			return err
		}
		return streamVerified(ctx, w, b.fill, length)
	case b.pass != nil:
		return sendPassthrough(b.pass.Body, b.Digest, b.pass.Size, w, start, length)
	}
	return errors.New("blob has no content to send (headers only)")
}

// Rereadable reports whether Send may be called more than once (for the
// parts of a multi-range answer): not for a blob streamed from the
// upstream without caching, whose body is read once.
func (b *Blob) Rereadable() bool { return b.pass == nil }

// Close releases the stored file or the reader of the fill (the fill goes
// on for its other readers).
func (b *Blob) Close() error {
	switch {
	case b.stored != nil:
		return b.stored.Close()
	case b.fill != nil:
		return b.fill.Close()
	case b.pass != nil:
		return b.pass.Body.Close()
	}
	return nil
}

// Blob answers a blob request. Content cached or being fetched for another
// repository is served under this name only if this repository holds it.
// A hit comes from the store; a miss joins or starts the digest's one fill
// (a HEAD of a miss asks the upstream for the size only).
func (s *Service) Blob(ctx context.Context, req Request, d digest.Digest) (*Blob, Outcome, error) {
	var out Outcome
	rt, err := s.route(req)
	if err != nil {
		return nil, out, err
	}
	headSize, err := s.confirmHeld(ctx, rt, d, false)
	if err != nil {
		return nil, out, wire(err, oci.ErrBlobUnknown)
	}
	if b, err := s.servableBlob(ctx, rt, d); err != nil || b != nil {
		out.Cache = "hit"
		return b, out, wire(err, oci.ErrBlobUnknown)
	}
	out.Cache = "miss"
	if req.Head {
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
		return &Blob{Digest: d, size: size}, out, nil
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
	rd, err := s.fills.OpenFrom(rt.up.Name, d, size, s.sourceFor(rt, d, size, false))
	if errors.Is(err, fill.ErrInStore) { // committed meanwhile, perhaps from another upstream
		b, err := s.servableBlob(ctx, rt, d)
		if err != nil || b != nil {
			out.Cache = "hit"
			return b, out, wire(err, oci.ErrBlobUnknown)
		}
		return nil, out, oci.Errorf(oci.ErrUnavailable, "blob %s left the cache while being opened; retry", d)
	}
	if unwritable(err) {
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
		return &Blob{Digest: d, pass: ub}, out, nil
	}
	if err != nil {
		return nil, out, wire(err, oci.ErrBlobUnknown)
	}
	out.Joined = rd.Joined()
	return &Blob{Digest: d, fill: rd, upstreamRange: func(ctx context.Context, start, length int64) (body io.ReadCloser, err error) {
		_, err = s.onChain(ctx, rt, fallbackBlob, func(r route) error {
			body, err = r.up.Client.BlobRange(ctx, r.repo, d, start, length)
			return err
		})
		return body, err
	}}, out, nil
}

// sendPassthrough streams bytes [start, start+length) of an upstream body
// (size bytes, if known)
// to w while hashing the whole body, and holds back the range's last byte
// until the whole blob has hashed to d: a response never completes with
// bytes no one has verified. length -1 is to the end.
func sendPassthrough(body io.Reader, d digest.Digest, size int64, w io.Writer, start, length int64) error {
	h := d.Algorithm().Digester()
	if size >= 0 { // a known size bounds the body: one byte more fails the digest
		body = io.LimitReader(body, size+1)
	}
	src := io.TeeReader(body, h.Hash())
	if _, err := io.CopyN(io.Discard, src, start); err != nil {
		return err
	}
	if length < 0 {
		length = math.MaxInt64
	}
	var last [1]byte
	held := false
	buf := make([]byte, 64<<10)
	for left := length; left > 0; {
		n, err := src.Read(buf[:min(int64(len(buf)), left)])
		if n > 0 {
			if held {
				if _, werr := w.Write(last[:]); werr != nil {
					return werr
				}
			}
			if _, werr := w.Write(buf[:n-1]); werr != nil {
				return werr
			}
			last[0], held = buf[n-1], true
			left -= int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, src); err != nil { // the rest, for the hash
		return err
	}
	if h.Digest() != d {
		return fmt.Errorf("upstream sent bytes that do not match %s", d)
	}
	if held {
		_, err := w.Write(last[:])
		return err
	}
	return nil
}

// servableBlob opens a committed blob for the route (nil if there is none),
// after making sure the route's upstream served its bytes: content stored
// from another upstream is verified there first. The check runs here, where
// the stored file is about to be served, so a commit from another upstream
// between the holdings check and this point cannot slip through.
func (s *Service) servableBlob(ctx context.Context, rt route, d digest.Digest) (*Blob, error) {
	b := s.storedBlob(ctx, d)
	if b == nil {
		return nil, nil
	}
	if err := s.confirmOrigin(ctx, rt, d, false); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// storedBlob opens a committed blob, or returns nil. A file whose size is
// not the one recorded when it was committed (truncated or grown on disk)
// is dropped, so the caller fetches it again instead of serving it.
func (s *Service) storedBlob(ctx context.Context, d digest.Digest) *Blob {
	b, err := s.store.Open(ctx, d)
	if err != nil {
		return nil
	}
	if e, ok, err := s.index.Blob(d); err == nil && ok && e.Size != b.Size() {
		b.Close()
		s.dropDamaged(ctx, d, fmt.Sprintf("%d bytes on disk, %d when committed", b.Size(), e.Size))
		return nil
	}
	s.index.Touch(d)
	out := &Blob{Digest: d, stored: b}
	if _, local := b.(interface{ OSFile() *os.File }); s.redirect != nil && !local {
		// In the shared store, not on this replica's disk: the client
		// fetches it there.
		if u, err := s.redirect(ctx, d); err == nil {
			out.redirect = u
		} else {
			s.log.Warn("presign blob redirect; streaming it instead", slog.String("digest", d.String()), slog.Any("error", err))
		}
	}
	return out
}

// dropDamaged removes a cached file found damaged on disk, and its index
// entries, so the next request fetches a good copy.
func (s *Service) dropDamaged(ctx context.Context, d digest.Digest, why string) {
	s.log.Error("a cached file is damaged on disk; dropped, the next request fetches it again",
		slog.String("digest", d.String()), slog.String("damage", why))
	if err := s.store.Delete(ctx, d); err != nil {
		s.log.Error("drop damaged file", slog.String("digest", d.String()), slog.Any("error", err))
	}
	if err := s.index.DeleteBlob(d); err != nil {
		s.log.Error("drop damaged file's index entry", slog.String("digest", d.String()), slog.Any("error", err))
	}
	s.mem.forget(d)
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

// sendStored copies a range of a committed blob; an *os.File underneath
// goes to the connection by sendfile(2).
func sendStored(b blobstore.Blob, w io.Writer, start, length int64) error {
	var src io.ReadSeeker = b
	if f, ok := b.(interface{ OSFile() *os.File }); ok {
		src = f.OSFile()
	}
	if _, err := src.Seek(start, io.SeekStart); err != nil {
		return err
	}
	if length < 0 {
		length = b.Size() - start
	}
	// io.Copy hands the *os.File (in a LimitedReader) to the connection's
	// ReadFrom, which uses sendfile.
	n, err := io.Copy(w, &io.LimitedReader{R: src, N: length})
	if err == nil && n != length {
		err = io.ErrUnexpectedEOF
	}
	return err
}
