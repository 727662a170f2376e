package fill

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/upstream"
)

// Send writes length bytes of the blob from start to w (to the blob's end
// when length is -1). It is the one verified send, for stored and growing
// blobs alike; an error means w got less than asked, and the answer must be
// cut, never completed.
//
//   - A committed blob is verified: its bytes go by sendfile(2) when w takes
//     a file (io.ReaderFrom, as a TCP connection does) and the store has one.
//   - Of a growing blob, an answer that ends at the blob's end (the whole
//     blob, a range covering all of it, or any range through the last byte,
//     such as "bytes=N-" or a suffix) is sent from the fill's file as the
//     bytes land, but its last byte waits until the whole blob hashed to its
//     digest; if the fill fails, w never gets that byte. Such an answer is
//     never taken from an upstream range, which nobody could verify.
//   - A partial range that stops before the blob's end is sent as its bytes
//     land, without waiting for verification (only a whole blob hashes to
//     its digest; lazy-pulling clients check their chunks themselves).
//   - Of a fill over several connections, any range beyond what has landed
//     steers the fill: its bytes are fetched next, once for every client
//     asking, and sent from the fill's file as they land.
//   - Of a fill over one stream, when the fill will not reach a partial
//     range's start within rangeWait and FetchRanges was given, the range
//     is fetched from the upstream as a range of its own and passed
//     through, at most maxSideFetches at once per fill and sideBudget
//     bytes in all; past those bounds it waits for the fill.
func (r *Reader) Send(ctx context.Context, w io.Writer, start, length int64) error {
	if r.stored != nil {
		return sendStored(r.stored, w, start, length)
	}
	size, err := r.Size(ctx)
	if err != nil {
		return err
	}
	if size >= 0 && length < 0 {
		length = size - start
	}
	// A fill over several connections fetches the range's bytes next
	// (segments.go): they come once, for every client that asks.
	steered := r.f.steer(start)
	switch {
	case size < 0 || length < 0:
		// To the end of a blob nobody said the size of: nothing marks its
		// last byte in the fill, so the last byte written waits here.
		hw := &holdLast{w: w}
		if err := r.copyOut(ctx, hw, start, -1); err != nil {
			return err
		}
		if err := r.Wait(ctx); err != nil {
			return err
		}
		return hw.release()
	case start+length >= size:
		// Ends with the blob: readable keeps the last byte back.
		if err := r.copyOut(ctx, w, start, length); err != nil {
			return err
		}
		return r.Wait(ctx) // an empty answer has no last byte to hold
	}
	if !steered && r.ranges != nil && !r.reaches(ctx, start+1) && r.f.takeSide(length) {
		defer r.f.dropSide()
		return r.sendSide(ctx, w, start, length)
	}
	return r.copyOut(ctx, w, start, length)
}

// copyOut copies bytes of a growing blob from start to w as the fill makes
// them readable: length of them, or up to the verified end if -1. A writer
// that takes a file gets each run by sendfile(2).
func (r *Reader) copyOut(ctx context.Context, w io.Writer, start, length int64) error {
	var file *os.File
	if _, ok := w.(io.ReaderFrom); ok {
		if f, err := r.openFile(); err == nil {
			defer f.Close()
			file = f
		}
	}
	var buf []byte
	if file == nil {
		bp := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(bp)
		buf = *bp
	}
	pos := int64(-1) // file's offset: sendfile(2) moves it, so it is sought only when needed
	for off, left := start, length; left != 0; {
		n, err := r.available(ctx, off)
		if err == io.EOF {
			if length < 0 {
				return nil
			}
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		if left > 0 {
			n = min(n, left)
		}
		var m int64
		if file != nil {
			if pos != off {
				if _, err := file.Seek(off, io.SeekStart); err != nil {
					return err
				}
			}
			// io.Copy hands the *os.File (in a LimitedReader) to w's
			// ReadFrom, which uses sendfile.
			m, err = io.Copy(w, &io.LimitedReader{R: file, N: n})
			pos = off + m
		} else {
			// Our large buffer, not w's own ReadFrom path.
			m, err = io.CopyBuffer(struct{ io.Writer }{w}, io.NewSectionReader(r.f.w, off, n), buf)
		}
		if err == nil && m != n {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		off += m
		if left > 0 {
			left -= m
		}
	}
	return nil
}

// copyBuffers are the buffers of sends from growing files that cannot go
// by sendfile: large enough to keep syscalls few, pooled so idle clients
// cost nothing.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// rangeWait is the short wait a partial range of a growing blob gets: when
// the fill will have written the range's first byte within it, the range
// is answered from the fill's file; otherwise it may be fetched from the
// upstream as a range of its own while the fill goes on.
const rangeWait = time.Second

// maxSideFetches bounds the upstream range fetches of one fill running at
// once, and sideBudget the bytes they ask for in all: many clients' far
// ranges of one blob cost the upstream at most that much more than the
// blob; the others wait for the fill.
const maxSideFetches = 2

func sideBudget(size int64) int64 { return size / 2 }

// reaches reports whether the fill has written end bytes, or will within
// rangeWait: at once when the fill's rate says it cannot, else after
// waiting at most that long.
func (r *Reader) reaches(ctx context.Context, end int64) bool {
	written, rate := r.progress()
	if written >= end {
		return true
	}
	if rate > 0 && float64(end-written)/rate > rangeWait.Seconds() {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, rangeWait)
	defer cancel()
	return r.waitWritten(wctx, end)
}

// takeSide reserves an upstream range fetch of length bytes, or reports
// false when the fill's bounds are reached.
func (f *Fill) takeSide(length int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sides >= maxSideFetches || f.sideBytes+length > sideBudget(f.size) {
		return false
	}
	f.sides++
	f.sideBytes += length
	return true
}

func (f *Fill) dropSide() {
	f.mu.Lock()
	f.sides--
	f.mu.Unlock()
}

// sendSide passes a partial range through from the upstream.
func (r *Reader) sendSide(ctx context.Context, w io.Writer, start, length int64) error {
	body, err := r.ranges(ctx, start, length)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.CopyN(w, body, length); err != nil {
		return fmt.Errorf("upstream range of %s: %w", r.f.d, eofIsShort(err))
	}
	return nil
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

// holdLast passes writes on to w except the last byte written, which it
// keeps until release. It makes an answer's end wait for verification
// where the bytes themselves do not say where the end is: a growing blob
// of unknown size, and a body passed through from the upstream.
type holdLast struct {
	w    io.Writer
	last [1]byte
	held bool
}

func (h *holdLast) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if h.held {
		if _, err := h.w.Write(h.last[:]); err != nil {
			return 0, err
		}
		h.held = false
	}
	if _, err := h.w.Write(p[:len(p)-1]); err != nil {
		return 0, err
	}
	h.last[0], h.held = p[len(p)-1], true
	return len(p), nil
}

// release writes the held byte: call it once the bytes are verified.
func (h *holdLast) release() error {
	if !h.held {
		return nil
	}
	h.held = false
	_, err := h.w.Write(h.last[:])
	return err
}

// Passthrough is a blob streamed from the upstream without being stored
// (the store cannot take it). Its body is read once, so Send may be called
// once; the whole body is hashed, and the answer's last byte is held until
// it matched the digest, whatever range was asked.
type Passthrough struct {
	d digest.Digest
	b *upstream.Blob
}

// NewPassthrough sends b, the upstream's body of d from byte 0.
func NewPassthrough(d digest.Digest, b *upstream.Blob) *Passthrough {
	return &Passthrough{d: d, b: b}
}

// Size is the upstream's Content-Length, -1 if it did not say.
func (p *Passthrough) Size(context.Context) (int64, error) { return p.b.Size, nil }

// Rereadable is false: the body is read once.
func (p *Passthrough) Rereadable() bool { return false }

// Close closes the upstream body.
func (p *Passthrough) Close() error { return p.b.Body.Close() }

// Send writes bytes [start, start+length) (to the end when length is -1)
// to w while hashing the whole body, and holds the answer's last byte
// until the whole body hashed to the digest.
func (p *Passthrough) Send(_ context.Context, w io.Writer, start, length int64) error {
	h := p.d.Algorithm().Digester()
	body := io.Reader(p.b.Body)
	if p.b.Size >= 0 { // a known size bounds the body: one byte more fails the digest
		body = io.LimitReader(body, p.b.Size+1)
	}
	src := io.TeeReader(body, h.Hash())
	if _, err := io.CopyN(io.Discard, src, start); err != nil {
		return eofIsShort(err)
	}
	if length < 0 {
		length = math.MaxInt64
	}
	hw := &holdLast{w: w}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	if _, err := io.CopyBuffer(hw, io.LimitReader(src, length), *bp); err != nil {
		return err
	}
	if _, err := io.CopyBuffer(io.Discard, src, *bp); err != nil { // the rest, for the hash
		return err
	}
	if h.Digest() != p.d {
		return fmt.Errorf("upstream sent bytes that do not match %s", p.d)
	}
	return hw.release()
}

func eofIsShort(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
