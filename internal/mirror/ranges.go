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
// are sent from the temporary file as they arrive, without waiting for
// the blob's verification: a part of a blob cannot be verified by the
// mirror (a lazy-pulling client checks its chunks against the digests of
// the layer's table of contents). Only a range that ends with the blob
// waits, for its last byte, until the blob is verified, like a whole blob.
// A range that starts where the fill will not be within rangeWait is
// fetched from the upstream as that range alone, passed through and not
// stored, while the fill goes on.
func (b *Blob) sendFillRange(ctx context.Context, w io.Writer, start, length int64) error {
	if b.upstreamRange == nil || fillReaches(ctx, b.fill, start+1) {
		return sendArriving(ctx, w, b.fill, start, length)
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

// sendArriving copies bytes [start, start+length) of a fill to w as the
// fill writes them (by sendfile(2) when the store gives a file). It does
// not hold the range's last byte for verification; the blob's own last
// byte still waits for it (the fill reader keeps it back).
func sendArriving(ctx context.Context, w io.Writer, rd *fill.Reader, start, length int64) error {
	if _, err := rd.Seek(start, io.SeekStart); err != nil {
		return err
	}
	f, err := rd.OpenFile()
	if err != nil { // no file to send from: copy through the reader
		bp := copyBuffers.Get().(*[]byte)
		defer copyBuffers.Put(bp)
		n, err := io.CopyBuffer(struct{ io.Writer }{w}, io.LimitReader(rd.WithContext(ctx), length), *bp)
		if err == nil && n != length {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	defer f.Close()
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return err
	}
	for left := length; left > 0; { // sendfile(2) moves f's offset with rd's
		n, err := rd.Available(ctx)
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		n = min(n, left)
		m, err := io.Copy(w, &io.LimitedReader{R: f, N: n})
		rd.Advance(m)
		if err == nil && m != n {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		left -= n
	}
	return nil
}
