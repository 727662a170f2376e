package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/regcache/regcache/internal/blobstore"
)

// Reader is a blob opened for sending: committed in the store (Stored is
// set), or growing in its fill and read as the bytes land. Send is the one
// way a blob's bytes go to a client or to another replica.
type Reader struct {
	f      *Fill          // nil when stored
	stored blobstore.Blob // the committed blob; nil while filling
	off    int64          // where ReadContext reads next
	closed bool
	joined bool
	ranges RangeSource
}

// RangeSource fetches bytes [start, start+length) of a blob from its
// upstream, passed through and not stored.
type RangeSource func(ctx context.Context, start, length int64) (io.ReadCloser, error)

// FromStore is a Reader of a blob committed in the store (a hit found
// without a fill). Closing the Reader closes b.
func FromStore(b blobstore.Blob) *Reader { return &Reader{stored: b} }

// Stored is the committed blob the Reader sends, nil while it sends a
// growing fill.
func (r *Reader) Stored() blobstore.Blob { return r.stored }

// Joined reports whether the reader joined a fill another request had
// started (a coalesced miss: the upstream was not asked again).
func (r *Reader) Joined() bool { return r.joined }

// FetchRanges lets Send fetch a partial range the fill will not reach soon
// from the upstream with fn, as a range of its own (bounded per fill; see
// Send). Without it, every range waits for the fill.
func (r *Reader) FetchRanges(fn RangeSource) { r.ranges = fn }

// Rereadable is true: Send may be called again (the parts of a multi-range
// answer).
func (r *Reader) Rereadable() bool { return true }

// Size waits until the blob's size is known (the upstream's headers have
// arrived) and returns it, -1 if the upstream did not say. It returns the
// fill's error if the fill failed first.
func (r *Reader) Size(ctx context.Context) (int64, error) {
	if r.stored != nil {
		return r.stored.Size(), nil
	}
	for {
		r.f.mu.Lock()
		known, size, done, err, ch := r.f.known, r.f.size, r.f.done, r.f.err, r.f.notify
		r.f.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if known || done {
			if done && size < 0 {
				size = r.f.written
			}
			return size, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ch:
		}
	}
}

// Seek sets the offset of the next Read. Only io.SeekStart is supported.
func (r *Reader) Seek(off int64, whence int) (int64, error) {
	if whence != io.SeekStart || off < 0 {
		return 0, errors.New("fill reader: only absolute, non-negative seeks")
	}
	r.off = off
	return off, nil
}

// ReadContext reads what is available at the offset, waiting for the fill
// to write more. It returns io.EOF at the end of a verified blob, and the
// fill's error (never io.EOF) if the fill failed.
func (r *Reader) ReadContext(ctx context.Context, p []byte) (int, error) {
	n, err := r.available(ctx, r.off)
	if err != nil {
		return 0, err
	}
	k, err := r.readerAt().ReadAt(p[:min(int64(len(p)), n)], r.off)
	r.off += int64(k)
	if err != nil && err != io.EOF {
		return k, err
	}
	return k, nil
}

// WithContext adapts the reader to io.Reader for one client's context.
func (r *Reader) WithContext(ctx context.Context) io.Reader {
	return readerFunc(func(p []byte) (int, error) { return r.ReadContext(ctx, p) })
}

type readerFunc func([]byte) (int, error)

func (fn readerFunc) Read(p []byte) (int, error) { return fn(p) }

// Wait blocks until the blob is verified (nil) or the fill failed (its
// error). The commit to the store may still be running when it returns.
func (r *Reader) Wait(ctx context.Context) error {
	if r.stored != nil {
		return nil
	}
	for {
		r.f.mu.Lock()
		verified, done, err, ch := r.f.verified, r.f.done, r.f.err, r.f.notify
		r.f.mu.Unlock()
		switch {
		case err != nil:
			return err
		case verified || done:
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Close releases the reader (a committed blob's file; the fill goes on for
// its other readers).
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.stored != nil {
		return r.stored.Close()
	}
	r.f.release()
	return nil
}

// readable is how many bytes at off may be read now, and end is set once
// no more will come; f.mu is held. It is the verified send's one rule: the
// blob's last byte is readable only once the whole blob hashed to its
// digest, so an answer that ends with the blob (a 200, or a range that
// reaches the blob's end) never completes with bytes no one has checked,
// and a bad fill cuts every such answer before its declared length. Of a
// blob whose size nobody said nothing marks the last byte: Send holds the
// last byte it wrote (holdLast) until the blob is verified instead.
func (f *Fill) readable(off int64) (n int64, end bool) {
	n, end = f.written-off, f.done || f.verified
	if n <= 0 && !end && f.pieces != nil { // a range beyond the prefix
		n = f.landedLocked(off)
	}
	if !end && f.size >= 0 {
		n = min(n, f.size-1-off)
	}
	return n, end
}

// available waits until bytes at off may be read and returns how many. It
// returns io.EOF at the end of the blob (of a fill: once verified) and the
// fill's error if it failed.
func (r *Reader) available(ctx context.Context, off int64) (int64, error) {
	if r.stored != nil {
		if n := r.stored.Size() - off; n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	for {
		r.f.mu.Lock()
		n, end := r.f.readable(off)
		err, ch := r.f.err, r.f.notify
		r.f.mu.Unlock()
		switch {
		case err != nil:
			return 0, fmt.Errorf("fill of %s failed: %w", r.f.d, err)
		case n > 0:
			return n, nil
		case end:
			return 0, io.EOF
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ch:
		}
	}
}

func (r *Reader) readerAt() io.ReaderAt {
	if r.stored != nil {
		return r.stored
	}
	return r.f.w
}

// openFile returns a read-only file of the growing blob with an offset of
// its own, for sendfile(2), when the store can give one.
func (r *Reader) openFile() (*os.File, error) {
	ro, ok := r.f.w.(interface{ Reopen() (*os.File, error) })
	if !ok {
		return nil, errors.New("the store cannot reopen a growing file")
	}
	return ro.Reopen()
}

// progress is how many bytes of the blob are in the temporary file and the
// fill's mean rate since it began, in bytes per second (0 before the first
// byte).
func (r *Reader) progress() (written int64, perSecond float64) {
	r.f.mu.Lock()
	written = r.f.written
	r.f.mu.Unlock()
	if secs := time.Since(r.f.started).Seconds(); secs > 0 && written > 0 {
		perSecond = float64(written) / secs
	}
	return written, perSecond
}

// waitWritten blocks until at least n bytes are in the temporary file and
// reports true, or returns false when the fill ended (failed, or finished
// shorter) or ctx is done first. It does not wait for verification.
func (r *Reader) waitWritten(ctx context.Context, n int64) bool {
	for {
		r.f.mu.Lock()
		written, done, ch := r.f.written, r.f.done, r.f.notify
		r.f.mu.Unlock()
		switch {
		case written >= n:
			return true
		case done:
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-ch:
		}
	}
}
