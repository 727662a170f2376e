package registry

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// onlyParams keeps the query parameters the upstream is asked with (the
// rest, like containerd's ns, are routing or noise) in a canonical order,
// so junk parameters neither bypass the cache nor grow it.
func onlyParams(r *http.Request, keep ...string) (string, error) {
	q := r.URL.Query()
	out := url.Values{}
	for _, k := range keep {
		switch vs := q[k]; len(vs) {
		case 0:
		case 1:
			out.Set(k, vs[0])
		default:
			return "", oci.Errorf(oci.ErrPaginationInvalid, "query parameter %s given %d times", k, len(vs))
		}
	}
	return out.Encode(), nil
}

// serveTags answers GET /v2/<name>/tags/list (with n and last, applied by
// the content service) with its listing.
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, rt route) {
	if _, err := onlyParams(r, "n", "last"); err != nil { // each at most once
		s.writeError(w, r, err)
		return
	}
	n := -1
	if v := r.URL.Query().Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 {
			s.writeError(w, r, oci.Errorf(oci.ErrPaginationInvalid, "invalid n=%q: want a non-negative integer", v))
			return
		}
	}
	l, out, err := s.content.Tags(r.Context(), s.request(rt, r), n, r.URL.Query().Get("last"))
	s.serveListing(w, r, rt, l, out, err)
}

// serveReferrers answers GET /v2/<name>/referrers/<digest>.
func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	query, err := onlyParams(r, "artifactType")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	l, out, err := s.content.Referrers(r.Context(), s.request(rt, r), d, query)
	s.serveListing(w, r, rt, l, out, err)
}

// serveListing writes a listing with its pagination link rewritten for
// the client's route.
func (s *Server) serveListing(w http.ResponseWriter, r *http.Request, rt route, l *mirror.Listing, out mirror.Outcome, err error) {
	noteOutcome(w, out)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ct := l.ContentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(l.Body)))
	if l.Link != "" {
		w.Header().Set("Link", clientLink(l.Link, rt))
	}
	if r.Method == http.MethodGet {
		_, _ = w.Write(l.Body)
	}
}

// clientLink rewrites an upstream pagination Link so the next page comes
// back through the same route: a path-prefix client keeps its prefix, a
// containerd client its ns parameter.
func clientLink(link string, rt route) string {
	switch rt.how {
	case "prefix":
		return strings.Replace(link, "/v2/"+rt.repo+"/", "/v2/"+rt.prefix+"/"+rt.repo+"/", 1)
	case "ns":
		start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
		if start < 0 || end < start {
			return link
		}
		u, err := url.Parse(link[start+1 : end])
		if err != nil {
			return link
		}
		q := u.Query()
		q.Set("ns", rt.up)
		u.RawQuery = q.Encode()
		return link[:start+1] + u.String() + link[end:]
	}
	return link
}
