package mirror

import (
	"context"
	"io"
	"time"

	"github.com/regcache/regcache/internal/fill"
)

// rangeWait is the short wait a range of a growing blob gets: when the fill
// will have written the range's last byte within it, the range is answered
// from the temporary file; otherwise it is fetched from the upstream as a
// range of its own while the fill goes on.
const rangeWait = time.Second

// sendFillRange answers a partial range of a blob being filled. Its bytes
// are sent as soon as they are in the temporary file, without waiting for
// the blob's verification: a part of a blob cannot be verified by the
// mirror (a lazy-pulling client checks its chunks against the digests of
// the layer's table of contents). A range the fill will not reach soon is
// fetched from the upstream as that range alone, passed through and not
// stored.
func (b *Blob) sendFillRange(ctx context.Context, w io.Writer, start, length int64) error {
	if fillReaches(ctx, b.fill, start+length) || b.upstreamRange == nil {
		return sendWritten(ctx, w, b.fill, start, length)
	}
	body, err := b.upstreamRange(ctx, start, length)
	if err != nil {
		return err
	}
	defer body.Close()
	n, err := io.Copy(w, body)
	if err == nil && n != length {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// fillReaches reports whether the fill has written end bytes, or will
// within rangeWait: at once when the fill's rate says it cannot, else after
// waiting at most that long.
func fillReaches(ctx context.Context, rd *fill.Reader, end int64) bool {
	written, rate := rd.Progress()
	if written >= end {
		return true
	}
	if rate > 0 && float64(end-written)/rate > rangeWait.Seconds() {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, rangeWait)
	defer cancel()
	return rd.WaitWritten(wctx, end)
}

// sendWritten copies bytes [start, start+length) of a fill's temporary
// file as they are written (by sendfile(2) when the store gives a file),
// without holding back the last one for verification.
func sendWritten(ctx context.Context, w io.Writer, rd *fill.Reader, start, length int64) error {
	if !rd.WaitWritten(ctx, start+length) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return rd.Wait(ctx) // the fill failed (its error), or ended short
	}
	if f, err := rd.OpenFile(); err == nil {
		defer f.Close()
		if _, err := f.Seek(start, io.SeekStart); err != nil {
			return err
		}
		n, err := io.Copy(w, &io.LimitedReader{R: f, N: length})
		if err == nil && n != length {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	for off, end := start, start+length; off < end; {
		n, err := rd.ReadAtWritten((*bp)[:min(int64(len(*bp)), end-off)], off)
		if n > 0 {
			if _, werr := w.Write((*bp)[:n]); werr != nil {
				return werr
			}
			off += int64(n)
		}
		if err != nil && err != io.EOF {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}
