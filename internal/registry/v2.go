package registry

import (
	"net/http"

	"github.com/regcache/regcache/internal/oci"
)

// serveV2 parses and validates the request before any I/O, picks the
// upstream, and hands it to the handler of its resource and method.
func (s *Server) serveV2(w http.ResponseWriter, r *http.Request) {
	p, err := oci.ParsePath(r.URL.Path)
	if err != nil {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			err = oci.Errorf(oci.ErrUnsupported, "regcache is a read-only mirror: %s is not supported", r.Method)
		}
		s.writeError(w, r, err)
		return
	}
	if p.Kind == oci.KindUpload || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		s.writeError(w, r, oci.Errorf(oci.ErrUnsupported, "regcache is a read-only mirror: %s %s is not supported (push to the upstream registry instead)", r.Method, p.Kind))
		return
	}
	info(w).kind = p.Kind.String()
	if p.Kind == oci.KindManifest {
		info(w).tag = p.Reference.Tag
	}
	if p.Kind == oci.KindBase {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("{}"))
		}
		return
	}
	rt, err := s.resolve(r, p.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := oci.ValidateName(rt.repo); err != nil {
		s.writeError(w, r, err)
		return
	}
	ri := info(w)
	ri.upstream, ri.route, ri.repo = rt.up, rt.how, rt.repo
	if s.authz != nil {
		if err := s.authz.Authorize(w, r, rt.up, rt.repo); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	switch p.Kind {
	case oci.KindManifest:
		s.serveManifest(w, r, rt, p.Reference)
	case oci.KindBlob:
		s.serveBlob(w, r, rt, p.Digest)
	case oci.KindTags:
		s.serveTags(w, r, rt)
	case oci.KindReferrers:
		s.serveReferrers(w, r, rt, p.Digest)
	}
}
