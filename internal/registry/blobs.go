package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// serveBlob answers GET and HEAD of /v2/<name>/blobs/<digest>. A hit is
// served from the store with http.ServeContent (Range, HEAD, sendfile). A
// miss joins or starts the digest's one fill and streams the growing file.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	ctx := r.Context()
	// Cached or being fetched for another repository: serve it under this
	// name only if this repository holds it.
	headSize, err := s.confirmHeld(ctx, rt, d, false)
	if err != nil {
		s.writeError(w, r, err, oci.ErrBlobUnknown)
		return
	}
	if s.serveStoredBlob(w, r, d) {
		return
	}
	ri := info(r)
	ri.cache = "miss"
	if r.Method == http.MethodHead {
		size := headSize
		if size < 0 { // held, but not asked yet
			if size, err = rt.up.Client.BlobHead(ctx, rt.repo, d); err != nil {
				s.writeError(w, r, err, oci.ErrBlobUnknown)
				return
			}
		}
		setBlobHeaders(w, d)
		if size >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		}
		return
	}
	rd, err := s.fills.Open(d, -1, s.blobSource(rt, d))
	if errors.Is(err, fill.ErrInStore) {
		if s.serveStoredBlob(w, r, d) {
			return
		}
	}
	if err != nil {
		s.writeError(w, r, err, oci.ErrBlobUnknown)
		return
	}
	defer rd.Close()
	size, err := rd.Size(ctx)
	if err != nil {
		s.writeError(w, r, err, oci.ErrBlobUnknown)
		return
	}
	start, length, partial, err := parseRange(r.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		s.writeError(w, r, err, oci.ErrBlobUnknown)
		return
	}
	setBlobHeaders(w, d)
	if length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if partial {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if _, err := rd.Seek(start, io.SeekStart); err != nil {
		panic(http.ErrAbortHandler)
	}
	if err := streamVerified(ctx, w, rd, length); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("blob stream cut short", slog.String("digest", d.String()), slog.Any("error", err))
		}
		panic(http.ErrAbortHandler) // never let a short body pass as complete
	}
}

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
	send := func(n int64) error {
		if _, err := f.Seek(rd.Offset(), io.SeekStart); err != nil {
			return err
		}
		// io.Copy hands the *os.File (in a LimitedReader) to the
		// connection's ReadFrom, which uses sendfile.
		m, err := io.Copy(w, &io.LimitedReader{R: f, N: n})
		rd.Advance(m)
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

// serveStoredBlob serves a committed blob and reports whether it did.
func (s *Server) serveStoredBlob(w http.ResponseWriter, r *http.Request, d digest.Digest) bool {
	b, err := s.store.Open(r.Context(), d)
	if err != nil {
		return false
	}
	defer b.Close()
	info(r).cache = "hit"
	s.index.Touch(d)
	setBlobHeaders(w, d)
	var content io.ReadSeeker = b
	if f, ok := b.(interface{ OSFile() *os.File }); ok {
		content = f.OSFile() // net/http sends an *os.File with sendfile(2)
	}
	http.ServeContent(w, r, "", time.Time{}, content)
	return true
}

func setBlobHeaders(w http.ResponseWriter, d digest.Digest) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "max-age=31536000")
}

// blobSource fetches the blob from the route's upstream.
func (s *Server) blobSource(rt route, d digest.Digest) fill.Source {
	return func(ctx context.Context, offset int64) (*upstream.Blob, error) {
		return rt.up.Client.BlobGet(ctx, rt.repo, d, offset)
	}
}

// parseRange parses a single byte range against size. No header means the
// whole blob. Malformed and unsatisfiable ranges are RANGE_INVALID (416).
// Several ranges are answered with the whole blob, as RFC 9110 allows.
func parseRange(h string, size int64) (start, length int64, partial bool, err error) {
	if h == "" {
		return 0, size, false, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "unsupported range unit in %q; use bytes=start-end", h)
	}
	if strings.Contains(spec, ",") {
		return 0, size, false, nil
	}
	if size < 0 {
		return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "the blob's size is not known yet; retry without Range")
	}
	a, b, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "malformed range %q", h)
	}
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "malformed range %q", h)
		}
		n = min(n, size)
		return size - n, n, true, nil
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "malformed range %q", h)
	}
	last := size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "malformed range %q", h)
		}
		last = min(last, size-1)
	}
	if first >= size {
		return 0, 0, false, oci.Errorf(oci.ErrRangeInvalid, "range %q starts beyond the blob's %d bytes", h, size)
	}
	return first, last - first + 1, true, nil
}

// startPrefetch starts fills for the config and layers of an image
// manifest that the store lacks, at most s.prefetchSem at a time, so the
// upstream link is busy while the client asks for layers a few at a time.
func (s *Server) startPrefetch(rt route, m *manifest) {
	var todo []descriptor
	for _, b := range blobsOf(m.body) {
		if _, err := s.store.Stat(s.ctx, b.Digest); err != nil {
			todo = append(todo, b)
		}
	}
	if len(todo) == 0 {
		return
	}
	s.goBackground(func() {
		for _, b := range todo {
			select {
			case s.prefetchSem <- struct{}{}:
			case <-s.ctx.Done():
				return
			}
			done := s.fills.Start(b.Digest, b.Size, s.blobSource(rt, b.Digest))
			if done == nil {
				<-s.prefetchSem
				continue
			}
			s.wg.Add(1) // inside a counted goroutine: safe against Close's Wait
			go func() {
				defer s.wg.Done()
				select {
				case <-done:
				case <-s.ctx.Done():
				}
				<-s.prefetchSem
			}()
		}
	})
}
