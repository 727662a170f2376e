package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// serveBlob answers GET and HEAD of /v2/<name>/blobs/<digest> with what
// the content service gives: a stored blob or one growing in its fill, cut
// by the same range rule either way.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	ctx := r.Context()
	b, out, err := s.content.Blob(ctx, s.request(rt, r), d)
	noteOutcome(w, out)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer b.Close()
	size, err := b.Size(ctx)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	etag := `"` + d.String() + `"`
	setBlobHeaders(w, d, etag)
	if u := b.RedirectURL(); u != "" && r.Method == http.MethodGet {
		http.Redirect(w, r, u, http.StatusTemporaryRedirect) // the client fetches (and ranges) it there
		return
	}
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rng := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		rng = "" // the client's copy is another blob: send the whole one
	}
	ranges, err := parseRange(rng, size)
	if err != nil {
		if size >= 0 { // RFC 9110 14.4: "*/" and the length, which a blob of unknown size has not
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		}
		s.writeError(w, r, err)
		return
	}
	if len(ranges) > 1 && !b.Rereadable() {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		s.writeError(w, r, oci.Errorf(oci.ErrRangeInvalid, "several ranges cannot be answered while the mirror streams this blob without caching it; ask one range per request"))
		return
	}
	if len(ranges) > 1 {
		s.sendMultipart(w, r, b, d, size, ranges)
		return
	}
	start, length, partial := int64(0), size, false
	if len(ranges) == 1 {
		start, length, partial = ranges[0].start, ranges[0].length, true
	}
	if length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if partial {
		w.Header().Set("Content-Range", ranges[0].contentRange(size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if r.Method == http.MethodHead {
		return
	}
	if err := b.Send(ctx, w, start, length); err != nil {
		s.cut(w, r, d, err)
	}
}

// cut ends a blob response whose body could not be completed. A client
// that closed the connection (containerd closes each parallel range after
// its chunk, on purpose) gets nothing more and is logged at debug, with the
// request's outcome "client_closed"; any other short answer is aborted, so
// a short body never passes as complete, and logged as a warning.
func (s *Server) cut(w http.ResponseWriter, r *http.Request, d digest.Digest, err error) {
	if ri := info(w); ri.clientGone || r.Context().Err() != nil {
		ri.outcome = "client_closed"
		s.log.Debug("client closed the blob stream", slog.String("digest", d.String()), slog.Any("error", err))
		return
	}
	s.log.Warn("blob stream cut short", slog.String("digest", d.String()), slog.Any("error", err))
	panic(http.ErrAbortHandler) // never let a short body pass as complete
}

// sendMultipart answers several ranges with a multipart/byteranges body
// (RFC 9110 14.6), one part per range in the order asked, each sent like
// a single range.
func (s *Server) sendMultipart(w http.ResponseWriter, r *http.Request, b *mirror.Blob, d digest.Digest, size int64, ranges []byteRange) {
	ctx := r.Context()
	partHeader := func(rg byteRange) textproto.MIMEHeader {
		return textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}, "Content-Range": {rg.contentRange(size)}}
	}
	// The body's length, written once into a counter: part headers are
	// small and bounded by maxRanges.
	var count countingWriter
	mw := multipart.NewWriter(&count) // a random boundary, kept for the body
	boundary := mw.Boundary()
	for _, rg := range ranges {
		_, _ = mw.CreatePart(partHeader(rg))
		count += countingWriter(rg.length)
	}
	_ = mw.Close()
	w.Header().Set("Content-Type", "multipart/byteranges; boundary="+boundary)
	w.Header().Set("Content-Length", strconv.FormatInt(int64(count), 10))
	w.WriteHeader(http.StatusPartialContent)
	if r.Method == http.MethodHead {
		return
	}
	mw = multipart.NewWriter(w)
	_ = mw.SetBoundary(boundary)
	for _, rg := range ranges {
		pw, err := mw.CreatePart(partHeader(rg))
		if err == nil {
			err = b.Send(ctx, pw, rg.start, rg.length)
		}
		if err != nil {
			s.cut(w, r, d, err)
			return
		}
	}
	if err := mw.Close(); err != nil {
		s.cut(w, r, d, err)
	}
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

func setBlobHeaders(w http.ResponseWriter, d digest.Digest, etag string) {
	h := w.Header()
	h["Content-Type"] = octetStreamValue
	h["Docker-Content-Digest"] = []string{d.String()}
	h["Etag"] = []string{etag}
	h["Accept-Ranges"] = bytesValue
	h["Cache-Control"] = immutableValue
}

// etagMatches reports whether an If-None-Match header names etag (weak
// comparison, RFC 9110 13.1.2) or is "*".
func etagMatches(h, etag string) bool {
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// byteRange is one satisfiable range of a blob.
type byteRange struct{ start, length int64 }

func (rg byteRange) contentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", rg.start, rg.start+rg.length-1, size)
}

// maxRanges bounds the ranges of one request: a client asking more is
// told to ask fewer (416), never answered with the whole blob.
const maxRanges = 16

// parseRange is the one range rule of the API, for stored and growing
// blobs alike: the byte ranges of h against size, in the order asked. No
// header means the whole blob (no ranges). Ranges starting beyond the blob
// are dropped, as RFC 9110 says; when none is left, or one is malformed,
// or there are more than maxRanges, the answer is RANGE_INVALID (416).
func parseRange(h string, size int64) ([]byteRange, error) {
	if h == "" {
		return nil, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil, oci.Errorf(oci.ErrRangeInvalid, "unsupported range unit in %q; use bytes=start-end", h)
	}
	if size < 0 {
		return nil, oci.Errorf(oci.ErrRangeInvalid, "the blob's size is not known yet; retry without Range")
	}
	parts := strings.Split(spec, ",")
	if len(parts) > maxRanges {
		return nil, oci.Errorf(oci.ErrRangeInvalid, "%d ranges in one request; ask at most %d", len(parts), maxRanges)
	}
	var out []byteRange
	for _, p := range parts {
		rg, ok, err := parseOneRange(strings.TrimSpace(p), size)
		if err != nil {
			return nil, oci.Errorf(oci.ErrRangeInvalid, "malformed range %q", h)
		}
		if ok {
			out = append(out, rg)
		}
	}
	if len(out) == 0 {
		return nil, oci.Errorf(oci.ErrRangeInvalid, "range %q starts beyond the blob's %d bytes", h, size)
	}
	return out, nil
}

// parseOneRange reads one "first-last", "first-" or "-suffix"; ok is false
// for a well-formed range that lies beyond the blob.
func parseOneRange(spec string, size int64) (byteRange, bool, error) {
	bad := errors.New("malformed")
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return byteRange{}, false, bad
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return byteRange{}, false, bad
		}
		if n == 0 || size == 0 {
			return byteRange{}, false, nil
		}
		n = min(n, size)
		return byteRange{size - n, n}, true, nil
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return byteRange{}, false, bad
	}
	last := size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return byteRange{}, false, bad
		}
		last = min(last, size-1)
	}
	if first >= size {
		return byteRange{}, false, nil
	}
	return byteRange{first, last - first + 1}, true, nil
}
