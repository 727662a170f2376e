package mirror

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
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

// Tags answers a tag list request from the repository's whole list (the
// upstream's pages followed, cached for the freshness window, served stale
// when the upstream fails), with n and last applied here: the answer is
// conformant whatever the upstream does with them (Distribution 2.8, for
// one, ignores last). n < 0 is "not given"; the Link of a further page is
// in the upstream repository's path, for the router to rewrite.
func (s *Service) Tags(ctx context.Context, req Request, n int, last string) (*Listing, Outcome, error) {
	if s.isCanary(req) {
		return canaryListing()
	}
	rt, err := s.route(req)
	if err != nil {
		return nil, Outcome{}, err
	}
	all, out, err := s.listing(ctx, rt, "tags\x00", func(ctx context.Context) (*upstream.Listing, error) {
		return s.allTags(ctx, rt)
	}, nil)
	if err != nil {
		return nil, out, err
	}
	var list tagList
	if err := json.Unmarshal(all.Body, &list); err != nil {
		return nil, out, oci.Errorf(oci.ErrUnavailable, "the upstream's tag list is not JSON: %v", err)
	}
	tags := list.Tags
	if last != "" {
		i, _ := slices.BinarySearch(tags, last)
		for i < len(tags) && tags[i] == last {
			i++
		}
		tags = tags[i:]
	}
	link := ""
	if n >= 0 && n < len(tags) {
		tags = tags[:n]
		if n > 0 {
			q := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[n-1]}}
			link = fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, rt.repo, q.Encode())
		}
	}
	if tags == nil {
		tags = []string{}
	}
	body, err := json.Marshal(tagList{Name: list.Name, Tags: tags})
	if err != nil {
		return nil, out, err
	}
	return &Listing{Body: body, ContentType: "application/json", Link: link}, out, nil
}

// tagList is the body of a tag list.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// maxTagPages bounds the upstream pages followed for one repository's list
// (each page is itself bounded by the upstream client), and maxTagListBytes
// the list gathered from them.
const (
	maxTagPages     = 64
	maxTagListBytes = 8 << 20
)

// allTags fetches every page of a repository's tag list and returns them
// as one sorted list.
func (s *Service) allTags(ctx context.Context, rt route) (*upstream.Listing, error) {
	var all tagList
	seen := map[string]bool{}
	query := ""
	size := 0
	for page := 0; ; page++ {
		l, err := rt.up.Client.Tags(ctx, rt.repo, query)
		if err != nil {
			return nil, err
		}
		var p tagList
		if err := json.Unmarshal(l.Body, &p); err != nil {
			return nil, oci.Errorf(oci.ErrUnavailable, "the upstream's tag list is not JSON: %v", err)
		}
		if all.Name == "" {
			all.Name = p.Name
		}
		grew := false
		for _, t := range p.Tags {
			if !seen[t] {
				seen[t], grew = true, true
				all.Tags = append(all.Tags, t)
				size += len(t) + 3
			}
		}
		if size > maxTagListBytes {
			s.log.Warn("a tag list is larger than the mirror keeps; serving the first tags gathered",
				slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.Int("tags", len(all.Tags)))
			break
		}
		next := nextQuery(l.Link)
		if next == "" || !grew {
			break
		}
		if page+1 >= maxTagPages {
			s.log.Warn("a tag list has more pages than the mirror follows; serving the first ones",
				slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.Int("pages", maxTagPages), slog.Int("tags", len(all.Tags)))
			break
		}
		query = next
	}
	slices.Sort(all.Tags)
	if all.Tags == nil {
		all.Tags = []string{}
	}
	body, err := json.Marshal(all)
	if err != nil {
		return nil, err
	}
	return &upstream.Listing{Body: body, ContentType: "application/json"}, nil
}

// nextQuery is the query of a Link header's rel="next" target, "" if none.
func nextQuery(link string) string {
	start, end := strings.IndexByte(link, '<'), strings.IndexByte(link, '>')
	if start < 0 || end < start || !strings.Contains(link[end:], `rel="next"`) {
		return ""
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil {
		return ""
	}
	q := u.Query()
	keep := url.Values{}
	for _, k := range []string{"n", "last"} {
		if v := q.Get(k); v != "" {
			keep.Set(k, v)
		}
	}
	return keep.Encode()
}

// Referrers passes a referrers request through, as Tags does.
func (s *Service) Referrers(ctx context.Context, req Request, d digest.Digest, query string) (*Listing, Outcome, error) {
	if s.isCanary(req) {
		return canaryListing()
	}
	rt, err := s.route(req)
	if err != nil {
		return nil, Outcome{}, err
	}
	return s.referrers(ctx, rt, d, query)
}

// referrers is the listing of d's referrers. The whole listing (no
// artifactType filter) is also kept in the cache (keptReferrers), as the
// pull policy finds signatures through it: a restart forgets nothing, and
// a digest verified before verifies again while the upstream is down.
func (s *Service) referrers(ctx context.Context, rt route, d digest.Digest, query string) (*Listing, Outcome, error) {
	var keep *listingStore
	if query == "" {
		keep = s.keptReferrers(rt, d)
	}
	return s.listing(ctx, rt, "referrers\x00"+d.String()+"\x00"+query, func(ctx context.Context) (*upstream.Listing, error) {
		return rt.up.Client.Referrers(ctx, rt.repo, d, query)
	}, keep)
}

// listingStore keeps a listing in the cache's store and index beside the
// memory copy: load gives the kept listing and when the upstream last
// gave it; save keeps a new one.
type listingStore struct {
	load func(context.Context) (*upstream.Listing, time.Time, bool)
	save func(context.Context, *upstream.Listing)
}

// ReferrersListingTag is the tag a referrers listing of d is kept under in
// the index, beside the repository's tags: cosign's naming
// (sha256-<hex>.sig) with a suffix no client asks for. Kept as a tag, the
// listing is evicted, exported, imported and invalidated with its
// repository, and it keeps the signature manifests it lists.
func ReferrersListingTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".referrers"
}

// keptReferrers keeps the referrers listing of d as a stored index
// manifest tagged ReferrersListingTag(d). A listing with a further page
// (Link) is not kept: its first page alone would not be the listing.
func (s *Service) keptReferrers(rt route, d digest.Digest) *listingStore {
	tag := ReferrersListingTag(d)
	return &listingStore{
		load: func(ctx context.Context) (*upstream.Listing, time.Time, bool) {
			e, ok, err := s.tag(ctx, rt, tag)
			if err != nil || !ok {
				return nil, time.Time{}, false
			}
			m, err := s.storedManifest(ctx, e.Digest)
			if err != nil {
				return nil, time.Time{}, false
			}
			return &upstream.Listing{Body: m.Body, ContentType: m.MediaType}, e.Checked, true
		},
		save: func(ctx context.Context, l *upstream.Listing) {
			if l.Link != "" || len(l.Body) > oci.MaxManifestSize || !strings.HasPrefix(l.ContentType, oci.MediaTypeOCIIndex) {
				return
			}
			m := &Manifest{Body: l.Body, MediaType: oci.MediaTypeOCIIndex, Digest: digest.FromBytes(l.Body)}
			now := s.now()
			e := cacheindex.TagEntry{Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body)), Fetched: now, Checked: now}
			err := s.storeManifest(ctx, rt, m)
			if err == nil {
				err = s.putTag(ctx, rt, tag, e)
			}
			if err != nil {
				s.log.Warn("could not keep a referrers listing; it is held in memory only", slog.String("upstream", rt.up.Name),
					slog.String("repository", rt.repo), slog.String("subject", d.String()), slog.Any("error", err))
			}
		},
	}
}

func (s *Service) listing(ctx context.Context, rt route, key string, fetch func(context.Context) (*upstream.Listing, error), keep *listingStore) (*Listing, Outcome, error) {
	var out Outcome
	key = rt.up.Name + "\x00" + rt.repo + "\x00" + key
	s.listMu.Lock()
	c, ok := s.listCache[key]
	s.listMu.Unlock()
	if !ok && keep != nil {
		// Not in memory (a restart, or the memory bound cleared it): the
		// kept listing, fresh for as long as it would have been in memory.
		if l, at, found := keep.load(ctx); found {
			c, ok = cachedListing{l: l, at: at}, true
			s.rememberListing(key, l, at)
		}
	}
	var l *upstream.Listing
	switch {
	case ok && s.now().Sub(c.at) < s.freshness:
		out.Cache, l = CacheHit, c.l
	default:
		v, err, _ := s.flights.Do("list\x00"+key, func() (any, error) {
			ctx, cancel := detached(ctx)
			defer cancel()
			l, err := fetch(ctx)
			if err == nil && keep != nil {
				keep.save(ctx, l)
			}
			return l, err
		})
		switch {
		case err == nil && len(v.(*upstream.Listing).Body) > maxListCacheBytes/8:
			out.Cache, l = CacheMiss, v.(*upstream.Listing) // too large to keep: served, not cached
		case err == nil:
			out.Cache, l = CacheMiss, v.(*upstream.Listing)
			s.rememberListing(key, l, s.now())
		case ok && !upstream.IsNotFound(err):
			out.Cache, out.Stale, l = CacheStale, err.Error(), c.l
			s.countStale(rt)
			s.log.Warn("upstream failed; serving a cached listing (stale)", slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.Any("error", err))
		default:
			return nil, out, wire(err, oci.ErrNameUnknown)
		}
	}
	return &Listing{Body: l.Body, ContentType: l.ContentType, Link: l.Link}, out, nil
}

// rememberListing holds a listing in memory, within maxListCacheBytes.
func (s *Service) rememberListing(key string, l *upstream.Listing, at time.Time) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if s.listBytes+int64(len(l.Body)) > maxListCacheBytes {
		clear(s.listCache)
		s.listBytes = 0
	}
	if old, ok := s.listCache[key]; ok {
		s.listBytes -= int64(len(old.l.Body))
	}
	s.listCache[key] = cachedListing{l: l, at: at}
	s.listBytes += int64(len(l.Body))
}
