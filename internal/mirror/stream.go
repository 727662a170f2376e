package mirror

import (
	"cmp"
	"context"
	"io"
	"os"
	"sync"

	"github.com/regcache/regcache/internal/fill"
)

// streamVerified copies length bytes (all, if -1) of a fill to w, holding
// back the response's last byte until the whole blob is verified: a range
// that ends before the blob does would otherwise complete with bytes no one
// has checked yet.
func streamVerified(ctx context.Context, w io.Writer, rd *fill.Reader, length int64) error {
	if length >= 0 {
		if f, err := rd.OpenFile(); err == nil {
			defer f.Close()
			return sendVerified(ctx, w, rd, f, length)
		}
	}
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	dst := struct{ io.Writer }{w} // our large buffer, not net/http's 32 KiB ReadFrom path
	src := rd.WithContext(ctx)
	if length < 0 { // unknown size: the reader fails rather than ending on a bad fill
		_, err := io.CopyBuffer(dst, src, *bp)
		return err
	}
	if length == 0 {
		return rd.Wait(ctx)
	}
	if n, err := io.CopyBuffer(dst, io.LimitReader(src, length-1), *bp); err != nil || n != length-1 {
		return cmp.Or(err, io.ErrUnexpectedEOF)
	}
	if err := rd.Wait(ctx); err != nil {
		return err
	}
	_, err := io.CopyN(dst, src, 1)
	return err
}

// sendVerified is streamVerified by sendfile(2): each run of bytes the fill
// has written goes from f to the connection in the kernel. The response's
// last byte still waits for the blob's verification.
func sendVerified(ctx context.Context, w io.Writer, rd *fill.Reader, f *os.File, length int64) error {
	pos := int64(-1) // f's offset: sendfile(2) moves it, so it is sought only once
	send := func(n int64) error {
		if pos != rd.Offset() {
			if _, err := f.Seek(rd.Offset(), io.SeekStart); err != nil {
				return err
			}
		}
		// io.Copy hands the *os.File (in a LimitedReader) to the
		// connection's ReadFrom, which uses sendfile.
		m, err := io.Copy(w, &io.LimitedReader{R: f, N: n})
		rd.Advance(m)
		pos = rd.Offset()
		if err == nil && m != n {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	for left := length; left > 0; {
		n, err := rd.Available(ctx)
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		if n < left {
			if err := send(n); err != nil {
				return err
			}
			left -= n
			continue
		}
		// This run completes the response: all but its last byte, then
		// the last byte once the blob is verified.
		if left > 1 {
			if err := send(left - 1); err != nil {
				return err
			}
		}
		if err := rd.Wait(ctx); err != nil {
			return err
		}
		return send(1)
	}
	return rd.Wait(ctx) // an empty response
}

// copyBuffers are the buffers of streams from growing files: large enough
// to keep syscalls few, pooled so idle clients cost nothing.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}
