package fill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/upstream"
)

// A fill over several connections. The blob is cut into pieces; each of
// the fill's connections takes the next piece (one a client waits for
// first, else the lowest), fetches it as a closed range and writes it at
// its offset into the one temporary file. The bytes are hashed in order as
// the contiguous prefix grows (blobstore.WriterAt.Advance), so the blob is
// verified, and committed, exactly as a fill over one stream is. A piece
// whose connection drops is resumed by range; an upstream that answers a
// range with the whole blob makes the fill go on over one stream. Readers
// read landed bytes beyond the prefix (a client's range), but an answer's
// last byte still waits for the whole blob to verify.

// SegmentSource fetches bytes [start, start+length) of a blob as a closed
// range (upstream.Client.BlobSegment). It returns upstream.ErrRangeIgnored
// when the upstream answered with the whole blob.
type SegmentSource func(ctx context.Context, start, length int64) (*upstream.Blob, error)

// StartOption configures a fill as it starts (OpenFrom, StartFrom); a
// request that joins a running fill joins it as it runs.
type StartOption func(*Fill)

// Segmented lets the fill of a blob of known size of at least
// segmentMin fetch it with fetch over up to connections range requests at
// once (upstreams[].fill_connections, bounded by max_connections). A store
// whose writer cannot take bytes at an offset, a blob of unknown size and
// connections <= 1 fill over one stream.
func Segmented(fetch SegmentSource, connections int) StartOption {
	return func(f *Fill) { f.segFetch, f.conns = fetch, connections }
}

// segmentMin is the smallest blob filled over several connections, and
// half of it the smallest piece: under 16 MiB a blob comes over one
// connection in about the time a second request's round trips (a token,
// a redirect to the CDN) take, and containerd's parallel ranges start at
// 8 MiB chunks. maxPiece bounds a piece so that a client's range far in
// the blob waits for at most one piece per connection before a connection
// takes it. Variables only for the tests.
var (
	segmentMin int64 = 16 << 20
	maxPiece   int64 = 16 << 20
)

// piece is a part of the blob one connection fetches: bytes [start, next)
// have landed in the file, up to end. Guarded by the fill's mu.
type piece struct {
	start, end, next int64
	taken            bool // a connection fetches it
	wanted           bool // a client waits on it: taken first
}

// segmented reports whether this fill goes over several connections.
func (f *Fill) segmented() (blobstore.WriterAt, bool) {
	wa, ok := f.w.(blobstore.WriterAt)
	if !ok || f.segFetch == nil || f.conns <= 1 || f.expected < segmentMin {
		return nil, false
	}
	return wa, true
}

// fetchAll fills the blob over several connections when it may, and over
// one stream otherwise or when the upstream ignores ranges.
func (f *Fill) fetchAll(ctx context.Context, src Source) error {
	wa, ok := f.segmented()
	if !ok {
		return f.fetch(ctx, src)
	}
	err := f.fetchSegments(ctx, wa)
	if !errors.Is(err, upstream.ErrRangeIgnored) {
		return err
	}
	f.m.log.Info("upstream ignores Range; filling the blob over one connection", slog.String("digest", f.d.String()), slog.Int64("offset", f.w.Written()))
	f.mu.Lock()
	f.pieces = nil // readers see the prefix alone again; the stream rewrites what landed beyond it
	f.changed()
	f.mu.Unlock()
	return f.fetch(ctx, src)
}

// cutPieces divides [0, size) into pieces: about four per connection,
// from maxPiece/4 to maxPiece bytes each.
func cutPieces(size int64, conns int) []*piece {
	n := min(max(size/int64(conns*4), segmentMin/2), maxPiece)
	var out []*piece
	for start := int64(0); start < size; start += n {
		end := min(start+n, size)
		if size-end < n/4 { // no crumb of a piece at the end
			end = size
		}
		out = append(out, &piece{start: start, end: end, next: start})
		if end == size {
			break
		}
	}
	return out
}

// fetchSegments runs the fill's connections until every piece landed, or
// one fails for good (the others stop).
func (f *Fill) fetchSegments(ctx context.Context, wa blobstore.WriterAt) error {
	f.mu.Lock()
	f.pieces = cutPieces(f.size, f.conns)
	conns := min(f.conns, len(f.pieces))
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range conns {
		wg.Go(func() {
			if err := f.connection(ctx, wa); err != nil {
				once.Do(func() { first = err })
				cancel()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.written != f.size {
		return fmt.Errorf("segments ended at %d of %d bytes: %w", f.written, f.size, io.ErrUnexpectedEOF)
	}
	return nil
}

// connection takes pieces until none is left.
func (f *Fill) connection(ctx context.Context, wa blobstore.WriterAt) error {
	buf := make([]byte, 128<<10)
	for {
		p := f.takePiece()
		if p == nil {
			return nil
		}
		if err := f.fetchPiece(ctx, wa, p, buf); err != nil {
			return err
		}
	}
}

// takePiece gives a connection the next piece: the lowest one a client
// waits on, else the lowest one; nil when every piece is taken.
func (f *Fill) takePiece() *piece {
	f.mu.Lock()
	defer f.mu.Unlock()
	var pick *piece
	for _, p := range f.pieces {
		if p.taken {
			continue
		}
		if p.wanted {
			pick = p
			break
		}
		if pick == nil {
			pick = p
		}
	}
	if pick != nil {
		pick.taken = true
	}
	return pick
}

// fetchPiece fetches one piece, resuming from where it stopped after a
// dropped connection, as fetch does for a whole blob.
func (f *Fill) fetchPiece(ctx context.Context, wa blobstore.WriterAt, p *piece, buf []byte) error {
	r := f.m.resume()
	for {
		f.mu.Lock()
		from, end := p.next, p.end
		f.mu.Unlock()
		if from >= end {
			return nil
		}
		b, err := f.segFetch(ctx, from, end-from)
		if ok, err := f.take(ctx, r, b, err); !ok {
			if err != nil {
				return err
			}
			continue
		}
		progressed, err := f.copyPiece(ctx, wa, b, p, buf)
		b.Body.Close()
		if stop, err := f.resumeAfter(ctx, r, progressed, err, "upstream range interrupted; resuming", p.next); stop {
			return err
		}
	}
}

// copyPiece writes the body at the piece's offset and moves the hashed
// prefix on. It returns nil only when the piece is complete.
func (f *Fill) copyPiece(ctx context.Context, wa blobstore.WriterAt, b *upstream.Blob, p *piece, buf []byte) (bool, error) {
	f.mu.Lock()
	off, end := p.next, p.end
	f.mu.Unlock()
	progressed := false
	for off < end {
		if err := ctx.Err(); err != nil {
			return progressed, err
		}
		n, rerr := b.Body.Read(buf[:min(int64(len(buf)), end-off)])
		if n > 0 {
			if _, err := wa.WriteAt(buf[:n], off); err != nil {
				return progressed, fmt.Errorf("%w: write cache file: %w", errFatal, err)
			}
			progressed = true
			off += int64(n)
			f.m.counts.fetched.add(b.Upstream, int64(n))
			f.mu.Lock()
			p.next = off
			f.received += int64(n)
			f.changed()
			f.mu.Unlock()
			if err := f.advance(wa); err != nil {
				return progressed, fmt.Errorf("%w: %w", errFatal, err)
			}
		}
		if rerr == io.EOF && off < end {
			return progressed, fmt.Errorf("upstream range ended at %d of %d bytes: %w", off, end, io.ErrUnexpectedEOF)
		}
		if rerr != nil && rerr != io.EOF {
			return progressed, rerr
		}
	}
	return progressed, nil
}

// advance hashes what landed right after the prefix and moves the prefix
// (written) over it.
func (f *Fill) advance(wa blobstore.WriterAt) error {
	f.advMu.Lock()
	defer f.advMu.Unlock()
	for {
		f.mu.Lock()
		from, to := f.written, f.prefixLocked()
		f.mu.Unlock()
		if to <= from {
			return nil
		}
		if err := wa.Advance(to - from); err != nil {
			return err
		}
		f.mu.Lock()
		f.written = to
		f.changed()
		f.mu.Unlock()
	}
}

// prefixLocked is where the bytes landed without a gap from byte 0 end.
func (f *Fill) prefixLocked() int64 {
	end := f.written
	for _, p := range f.pieces {
		if p.end <= end {
			continue
		}
		if p.start > end {
			break
		}
		end = max(end, p.next)
		if p.next < p.end {
			break
		}
	}
	return end
}

// landedLocked is how many bytes from off landed in a piece beyond the
// prefix (0 when none did yet).
func (f *Fill) landedLocked(off int64) int64 {
	for _, p := range f.pieces {
		if off >= p.start && off < p.next {
			return p.next - off
		}
	}
	return 0
}

// steer makes the bytes from off come next: the piece holding off is
// taken before the others, split at off when off lies well inside it. It
// reports false when the fill is not over several connections (nothing
// to steer).
func (f *Fill) steer(off int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pieces == nil || f.done {
		return false
	}
	if off < f.written {
		return true
	}
	for i, p := range f.pieces {
		if off < p.start || off >= p.end {
			continue
		}
		if p.taken { // its connection gets there
			return true
		}
		if off-p.start >= minSplit && p.end-off >= minSplit {
			q := &piece{start: off, end: p.end, next: off, wanted: true}
			p.end = off
			f.pieces = slices.Insert(f.pieces, i+1, q)
			return true
		}
		p.wanted = true
		return true
	}
	return true
}

// minSplit is the smallest piece a client's range cuts off another: below
// it the request's round trip costs more than waiting for the bytes.
const minSplit = 1 << 20
