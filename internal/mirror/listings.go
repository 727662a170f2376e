package mirror

import (
	"context"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// maxListCacheBytes bounds the memory of cached tag and referrer listings.
const maxListCacheBytes = 64 << 20

// Listing is a tag or referrers list as the upstream sent it. Link is the
// upstream's pagination header, in the upstream's paths.
type Listing struct {
	Body        []byte
	ContentType string
	Link        string
}

type cachedListing struct {
	l  *upstream.Listing
	at time.Time
}

// Tags passes a tag list request through to the upstream, cached for the
// freshness window and served stale when the upstream fails. query is the
// canonical query the upstream is asked with (n, last).
func (s *Service) Tags(ctx context.Context, req Request, query string) (*Listing, Outcome, error) {
	rt, err := s.route(req)
	if err != nil {
		return nil, Outcome{}, err
	}
	return s.listing(ctx, rt, "tags\x00"+query, func(ctx context.Context) (*upstream.Listing, error) {
		return rt.up.Client.Tags(ctx, rt.repo, query)
	})
}

// Referrers passes a referrers request through, as Tags does.
func (s *Service) Referrers(ctx context.Context, req Request, d digest.Digest, query string) (*Listing, Outcome, error) {
	rt, err := s.route(req)
	if err != nil {
		return nil, Outcome{}, err
	}
	return s.listing(ctx, rt, "referrers\x00"+d.String()+"\x00"+query, func(ctx context.Context) (*upstream.Listing, error) {
		return rt.up.Client.Referrers(ctx, rt.repo, d, query)
	})
}

func (s *Service) listing(ctx context.Context, rt route, key string, fetch func(context.Context) (*upstream.Listing, error)) (*Listing, Outcome, error) {
	var out Outcome
	key = rt.up.Name + "\x00" + rt.repo + "\x00" + key
	s.listMu.Lock()
	c, ok := s.listCache[key]
	s.listMu.Unlock()
	var l *upstream.Listing
	switch {
	case ok && s.now().Sub(c.at) < s.freshness:
		out.Cache, l = "hit", c.l
	default:
		v, err, _ := s.flights.Do("list\x00"+key, func() (any, error) {
			ctx, cancel := detached(ctx)
			defer cancel()
			return fetch(ctx)
		})
		switch {
		case err == nil:
			out.Cache, l = "miss", v.(*upstream.Listing)
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
			out.Cache, out.Stale, l = "stale", err.Error(), c.l
			s.countStale(rt)
			s.log.Warn("upstream failed; serving a cached listing (stale)", slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.Any("error", err))
		default:
			return nil, out, wire(err, oci.ErrNameUnknown)
		}
	}
	return &Listing{Body: l.Body, ContentType: l.ContentType, Link: l.Link}, out, nil
}
