package registry

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

type cachedListing struct {
	l  *upstream.Listing
	at time.Time
}

// serveTags passes GET /v2/<name>/tags/list (with n and last) through to
// the upstream, cached for the freshness window and served stale when the
// upstream fails.
func (s *Server) serveTags(w http.ResponseWriter, r *http.Request, rt route) {
	q := r.URL.Query()
	if n := q.Get("n"); n != "" {
		if v, err := strconv.Atoi(n); err != nil || v < 0 {
			s.writeError(w, r, oci.Errorf(oci.ErrUnsupported, "invalid n=%q: want a non-negative integer", n), oci.ErrNameUnknown)
			return
		}
	}
	q.Del("ns")
	query := q.Encode()
	s.serveListing(w, r, rt, "tags\x00"+query, func(ctx context.Context) (*upstream.Listing, error) {
		return rt.up.Client.Tags(ctx, rt.repo, query)
	})
}

// serveReferrers passes GET /v2/<name>/referrers/<digest> through.
func (s *Server) serveReferrers(w http.ResponseWriter, r *http.Request, rt route, d digest.Digest) {
	q := r.URL.Query()
	q.Del("ns")
	query := q.Encode()
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
			if len(s.listCache) > 10000 {
				clear(s.listCache)
			}
			s.listCache[key] = cachedListing{l: l, at: s.now()}
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
// back through the same route (a path-prefix client keeps its prefix).
func clientLink(link string, rt route) string {
	if rt.how != "prefix" {
		return link
	}
	return strings.Replace(link, "/v2/"+rt.repo+"/", "/v2/"+rt.prefix+"/"+rt.repo+"/", 1)
}
