package registry

import (
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
	ranges, err := oci.ParseRange(rng, size)
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
		start, length, partial = ranges[0].Start, ranges[0].Length, true
	}
	if length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if partial {
		w.Header().Set("Content-Range", ranges[0].ContentRange(size))
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
func (s *Server) sendMultipart(w http.ResponseWriter, r *http.Request, b *mirror.Blob, d digest.Digest, size int64, ranges []oci.ByteRange) {
	ctx := r.Context()
	partHeader := func(rg oci.ByteRange) textproto.MIMEHeader {
		return textproto.MIMEHeader{"Content-Type": {"application/octet-stream"}, "Content-Range": {rg.ContentRange(size)}}
	}
	// The body's length, written once into a counter: part headers are
	// small and bounded by oci.MaxRanges.
	var count countingWriter
	mw := multipart.NewWriter(&count) // a random boundary, kept for the body
	boundary := mw.Boundary()
	for _, rg := range ranges {
		_, _ = mw.CreatePart(partHeader(rg))
		count += countingWriter(rg.Length)
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
			err = b.Send(ctx, pw, rg.Start, rg.Length)
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
