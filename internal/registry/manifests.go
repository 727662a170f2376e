package registry

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// serveManifest answers GET and HEAD of /v2/<name>/manifests/<reference>
// with the manifest the content service gives, byte for byte.
func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, rt route, ref oci.Reference) {
	m, out, err := s.content.Manifest(r.Context(), s.request(rt, r), ref)
	noteOutcome(w, out)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	if out.Rule != "" {
		h.Set("X-Regcache-Rule", out.Rule)
	}
	mh := s.manifestHeaders.get(m)
	h["Content-Type"], h["Content-Length"] = mh.contentType, mh.contentLength
	h["Docker-Content-Digest"], h["Etag"] = mh.digest, mh.etag
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.Body)
	}
}

// manifestHeaders are the header values of one manifest's answer, made
// once and shared by the answers that follow (never modified in place;
// see headers.go).
type manifestHeaders struct {
	d                                        digest.Digest
	mediaType                                string
	size                                     int
	contentType, contentLength, digest, etag []string
}

// headerCache keeps the header values of recently answered manifests, so a
// warm hit builds none (four slices, the ETag and the length's string:
// six allocations of a hit's fifteen; issue 28). It is direct-mapped by
// the digest's first hex digits and bounded (headerSlots entries); a
// collision only rebuilds. Safe for concurrent use.
type headerCache struct {
	slots [headerSlots]atomic.Pointer[manifestHeaders]
}

const headerSlots = 1024

func (c *headerCache) get(m *mirror.Manifest) *manifestHeaders {
	slot := &c.slots[slotOf(m.Digest)]
	if mh := slot.Load(); mh != nil && mh.d == m.Digest && mh.mediaType == m.MediaType && mh.size == len(m.Body) {
		return mh
	}
	mh := &manifestHeaders{d: m.Digest, mediaType: m.MediaType, size: len(m.Body),
		contentType: []string{m.MediaType}, contentLength: []string{strconv.Itoa(len(m.Body))},
		digest: []string{m.Digest.String()}, etag: []string{`"` + m.Digest.String() + `"`}}
	slot.Store(mh)
	return mh
}

// slotOf spreads digests over the slots by the first hex digits of their
// encoded part (uniform for any cryptographic digest).
func slotOf(d digest.Digest) int {
	_, enc, _ := strings.Cut(string(d), ":")
	var n int
	for i := 0; i < len(enc) && i < 3; i++ {
		n = n<<4 | int(hexValue(enc[i]))
	}
	return n % headerSlots
}

func hexValue(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c & 0xf
}
