package registry

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
)

// serveBlob answers GET and HEAD of /v2/<name>/blobs/<digest> with what
// the content service gives: a stored blob or one growing in its fill, cut
// by the same range rule either way.
func (s *Server) serveBlob(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	ctx := r.Context()
	b, out, err := s.content.Blob(ctx, rt.request(r), d)
	noteOutcome(r, out)
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
	setBlobHeaders(w, d)
	if u := b.RedirectURL(); u != "" && r.Method == http.MethodGet {
		http.Redirect(w, r, u, http.StatusTemporaryRedirect) // the client fetches (and ranges) it there
		return
	}
	etag := `"` + d.String() + `"`
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	rng := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		rng = "" // the client's copy is another blob: send the whole one
	}
	start, length, partial, err := parseRange(rng, size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		s.writeError(w, r, err)
		return
	}
	if length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	}
	if partial {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	if r.Method == http.MethodHead {
		return
	}
	if err := b.Send(ctx, w, start, length); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("blob stream cut short", slog.String("digest", d.String()), slog.Any("error", err))
		}
		panic(http.ErrAbortHandler) // never let a short body pass as complete
	}
}

func setBlobHeaders(w http.ResponseWriter, d digest.Digest) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "max-age=31536000")
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

// parseRange is the one range rule of the API, for stored and growing
// blobs alike: a single byte range against size. No header means the
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
