package registry

import (
	"net/http"
	"strconv"

	"github.com/regcache/regcache/internal/oci"
)

// serveManifest answers GET and HEAD of /v2/<name>/manifests/<reference>
// with the manifest the content service gives, byte for byte.
func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, rt route, ref oci.Reference) {
	m, out, err := s.content.Manifest(r.Context(), s.request(rt, r), ref)
	noteOutcome(r, out)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	if out.Rule != "" {
		h.Set("X-Regcache-Rule", out.Rule)
	}
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("ETag", `"`+m.Digest.String()+`"`)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.Body)
	}
}
