package registry

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// maxListCacheBytes bounds the memory of cached tag and referrer listings.
const maxListCacheBytes = 64 << 20

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

type cachedListing struct {
	l  *upstream.Listing
	at time.Time
}

// serveTags passes GET /v2/<name>/tags/list (with n and last) through to
// the upstream, cached for the freshness window and served stale when the
// upstream fails.
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, rt route) {
	query, err := onlyParams(r, "n", "last")
	if err != nil {
		s.writeError(w, r, err, oci.ErrNameUnknown)
		return
	}
	if n := r.URL.Query().Get("n"); n != "" {
		if v, err := strconv.Atoi(n); err != nil || v < 0 {
			s.writeError(w, r, oci.Errorf(oci.ErrPaginationInvalid, "invalid n=%q: want a non-negative integer", n), oci.ErrNameUnknown)
			return
		}
	}
	s.serveListing(w, r, rt, "tags\x00"+query, func(ctx context.Context) (*upstream.Listing, error) {
		return rt.up.Client.Tags(ctx, rt.repo, query)
	})
}

// serveReferrers passes GET /v2/<name>/referrers/<digest> through.
func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	query, err := onlyParams(r, "artifactType")
	if err != nil {
		s.writeError(w, r, err, oci.ErrNameUnknown)
		return
	}
	s.serveListing(w, r, rt, "referrers\x00"+d.String()+"\x00"+query, func(ctx context.Context) (*upstream.Listing, error) {
		return rt.up.Client.Referrers(ctx, rt.repo, d, query)
	})
}

func (s *Server) serveListing(w http.ResponseWriter, r *http.Request, rt route, key string, fetch func(context.Context) (*upstream.Listing, error)) {
	key = rt.up.Name + "\x00" + rt.repo + "\x00" + key
	ri := info(r)
	s.listMu.Lock()
	c, ok := s.listCache[key]
	s.listMu.Unlock()
	var l *upstream.Listing
	switch {
	case ok && s.now().Sub(c.at) < s.freshness:
		ri.cache, l = "hit", c.l
	default:
		v, err, _ := s.flights.Do("list\x00"+key, func() (any, error) {
			ctx, cancel := detached(r.Context())
			defer cancel()
			return fetch(ctx)
		})
		switch {
		case err == nil:
			ri.cache, l = "miss", v.(*upstream.Listing)
			s.listMu.Lock()
			if s.listBytes+int64(len(l.Body)) > maxListCacheBytes {
				clear(s.listCache)
				s.listBytes = 0
			}
			if old, ok := s.listCache[key]; ok {
				s.listBytes -= int64(len(old.l.Body))
			}
			s.listCache[key] = cachedListing{l: l, at: s.now()}
			s.listBytes += int64(len(l.Body))
			s.listMu.Unlock()
		case ok && !upstream.IsNotFound(err):
			ri.cache, ri.stale, l = "stale", err.Error(), c.l
			s.countStale(rt)
			s.log.Warn("upstream failed; serving a cached listing (stale)", slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.Any("error", err))
		default:
			s.writeError(w, r, err, oci.ErrNameUnknown)
			return
		}
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
		q.Set("ns", rt.up.Name)
		u.RawQuery = q.Encode()
		return link[:start+1] + u.String() + link[end:]
	}
	return link
}
