package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// Manifest is a manifest ready to serve, byte for byte as the upstream
// sent it.
type Manifest struct {
	Body      []byte
	MediaType string
	Digest    digest.Digest
}

// Manifest answers a manifest request. By digest: immutable, from the
// store, else fetched once. By tag: from the store while fresh; then one
// HEAD upstream; on any upstream failure, the last known digest (stale).
// A GET of an image manifest starts the prefetch of its blobs.
func (s *Service) Manifest(ctx context.Context, req Request, ref oci.Reference) (*Manifest, Outcome, error) {
	if s.isCanary(req) {
		return canaryManifest(ref)
	}
	var out Outcome
	rt, err := s.route(req)
	if err != nil {
		return nil, out, err
	}
	accept := func() []string { return accepts(req.Accept) } // for the upstream only
	if req.Background {
		ctx = background(ctx)
	}
	if a, ok := s.rules.Load().Match(rt.up.Name, rt.repo, ref.Tag); ok {
		out.Rule = a.String()
	}
	var m *Manifest
	if ref.IsDigest() {
		m, err = s.manifestByDigest(ctx, rt, ref.Digest, accept, &out)
	} else {
		m, err = s.manifestByTag(ctx, rt, ref.Tag, accept, &out)
	}
	if err != nil {
		return nil, out, wire(err, oci.ErrManifestUnknown)
	}
	// Decided for the digest before anything is served or prefetched.
	if err := s.checkPolicy(ctx, req, rt, ref, m); err != nil {
		return nil, out, err
	}
	if !req.Head && !oci.IsIndex(m.MediaType) && s.prefetch {
		s.startPrefetch(rt, m)
	}
	s.touchRefs(m)
	return m, out, nil
}

func (s *Service) manifestByDigest(ctx context.Context, rt route, d digest.Digest, accept func() []string, out *Outcome) (*Manifest, error) {
	if m, err := s.storedManifest(ctx, d); err == nil {
		out.Cache = CacheHit
		if _, err := s.confirmHeld(ctx, rt, d, true); err != nil {
			return nil, err
		}
		return m, nil
	}
	out.Cache = CacheMiss
	m, _, err := s.fetchManifest(ctx, rt, oci.Reference{Digest: d}, accept())
	return m, err
}

func (s *Service) manifestByTag(ctx context.Context, rt route, tag string, accept func() []string, out *Outcome) (*Manifest, error) {
	e, ok, err := s.tag(ctx, rt, tag)
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	var cached *Manifest
	if ok {
		cached, _ = s.storedManifest(ctx, e.Digest)
	}
	if cached == nil {
		out.Cache = CacheMiss
		key := rt.up.Name + "\x00" + rt.repo + "\x00" + tag
		if left := s.negativeLeft(key); left > 0 {
			out.Cache = CacheNegative
			return nil, oci.Errorf(oci.ErrManifestUnknown, "upstream %s has no %s:%s (answer cached; asked again in %s)", rt.up.Name, rt.repo, tag, left.Round(time.Second))
		}
		m, err := s.fetchTag(ctx, rt, tag, accept())
		if upstream.IsNotFound(err) {
			s.rememberNotFound(key)
		}
		return m, err
	}
	// A tag a fallback member gave is asked of the upstream each time (a
	// HEAD, not counted; free while its breaker is open), so its own
	// answer wins as soon as it is back. An immutable tag (rules) is
	// never asked again, unless invalidated (never checked).
	if fresh, _, _ := s.tagFreshness(rt, tag); !e.Checked.IsZero() && s.now().Sub(e.Checked) < fresh && e.Source == "" {
		out.Cache = CacheHit
		return cached, nil
	}
	desc, err := s.revalidate(ctx, rt, tag, accept())
	switch {
	case err != nil && upstream.IsNotFound(err):
		out.Cache = CacheMiss
		return nil, err
	case err != nil && e.Source != "" && upstream.IsRefused(err):
		// The upstream refuses this repository (401/403): an answer, not
		// an outage. What a fallback member gave is not served as stale.
		out.Cache = CacheMiss
		return nil, err
	case err != nil:
		out.Cache, out.Stale = CacheStale, err.Error()
		s.countStale(rt)
		s.log.Warn("upstream failed; serving the cached manifest (stale)",
			slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.String("tag", tag),
			slog.String("digest", e.Digest.String()), slog.Any("error", err))
		return cached, nil
	case desc.Digest == e.Digest:
		out.Cache = CacheRevalidated
		return cached, nil
	}
	// The tag moved: fetch the new manifest once, by digest.
	out.Cache = CacheMiss
	m, err := s.storedManifest(ctx, desc.Digest)
	if err == nil {
		// Stored for another repository (perhaps of another upstream,
		// whose bytes this upstream's HEAD does not prove it serves).
		if err := s.confirmOrigin(ctx, rt, m.Digest, true); err != nil {
			return nil, err
		}
		// This repository holds it too now.
		if err := s.recordManifestHeld(ctx, rt, m.Digest); err != nil {
			return nil, fmt.Errorf("record manifest: %w", err)
		}
	} else {
		if m, _, err = s.fetchManifest(ctx, rt, oci.Reference{Digest: desc.Digest}, accept()); err != nil {
			out.Cache, out.Stale = CacheStale, err.Error()
			s.countStale(rt)
			return cached, nil
		}
	}
	now := s.now()
	if err := s.putTag(ctx, rt, tag, cacheindex.TagEntry{Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body)), Fetched: now, Checked: now}); err != nil {
		return nil, fmt.Errorf("record tag: %w", err)
	}
	return m, nil
}

// tag reads a tag's entry from memory, else from the index (and keeps it).
func (s *Service) tag(ctx context.Context, rt route, tag string) (cacheindex.TagEntry, bool, error) {
	k := tagKey{rt.up.Name, rt.repo, tag}
	if e, ok := s.mem.tag(k, s.tagMemory()); ok {
		return e, true, nil
	}
	e, ok, err := s.index.Tag(ctx, rt.up.Name, rt.repo, tag)
	if ok && err == nil {
		s.mem.putTag(k, e)
	}
	return e, ok, err
}

// putTag records a tag's entry in the index, then in memory.
func (s *Service) putTag(ctx context.Context, rt route, tag string, e cacheindex.TagEntry) error {
	if err := s.index.PutTag(ctx, rt.up.Name, rt.repo, tag, e); err != nil {
		return err
	}
	s.mem.putTag(tagKey{rt.up.Name, rt.repo, tag}, e)
	return nil
}

// revalidate asks the upstream for a tag's current digest with a HEAD,
// coalescing concurrent revalidations of the same tag, and records the
// check when the digest is unchanged.
func (s *Service) revalidate(ctx context.Context, rt route, tag string, accept []string) (upstream.Descriptor, error) {
	key := "head\x00" + rt.up.Name + "\x00" + rt.repo + "\x00" + tag
	freshness, _, _ := s.tagFreshness(rt, tag)
	fresh := func() (any, bool) {
		if e, ok, _ := s.sharedTag(ctx, rt, tag); ok && s.now().Sub(e.Checked) < freshness && e.Source == "" {
			return upstream.Descriptor{Digest: e.Digest, MediaType: e.MediaType, Size: e.Size}, true
		}
		return nil, false
	}
	v, err, _ := s.flights.Do(key, func() (any, error) {
		return s.clusterOnce(ctx, key, func() (any, error) { return s.revalidateOnce(ctx, rt, tag, accept, fresh) }, fresh)
	})
	return v.(upstream.Descriptor), err
}

// revalidateOnce is one revalidation (in this process, and in the cluster).
func (s *Service) revalidateOnce(ctx context.Context, rt route, tag string, accept []string, fresh func() (any, bool)) (any, error) {
	// A revalidation that finished just before this one was asked
	// for already answered it.
	if v, ok := fresh(); ok {
		return v, nil
	}
	ctx, cancel := detached(ctx)
	defer cancel()
	desc, err := rt.up.Client.ManifestHead(ctx, rt.repo, oci.Reference{Tag: tag}, accept)
	if err != nil {
		return desc, err
	}
	if e, ok, _ := s.tag(ctx, rt, tag); ok && e.Digest == desc.Digest {
		e.Checked, e.Source = s.now(), "" // the upstream's own answer now
		_ = s.putTag(ctx, rt, tag, e)
	}
	return desc, nil
}

// fetchTag GETs a tag's manifest, stores it and records the tag, once for
// concurrent requests of the same tag (the tag is recorded inside the
// flight, so a request arriving just after it finds the tag).
func (s *Service) fetchTag(ctx context.Context, rt route, tag string, accept []string) (*Manifest, error) {
	key := "tag\x00" + rt.up.Name + "\x00" + rt.repo + "\x00" + tag
	freshness, _, _ := s.tagFreshness(rt, tag)
	fresh := func() (any, bool) {
		if e, ok, _ := s.sharedTag(ctx, rt, tag); ok && s.now().Sub(e.Checked) < freshness {
			if m, err := s.storedManifest(ctx, e.Digest); err == nil {
				return m, true
			}
		}
		return nil, false
	}
	v, err, _ := s.flights.Do(key, func() (any, error) {
		return s.clusterOnce(ctx, key, func() (any, error) { return s.fetchTagOnce(ctx, rt, tag, accept, fresh) }, fresh)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Manifest), nil
}

// fetchTagOnce is one fetch of a tag (in this process, and in the cluster).
func (s *Service) fetchTagOnce(ctx context.Context, rt route, tag string, accept []string, fresh func() (any, bool)) (any, error) {
	if m, ok := fresh(); ok {
		return m, nil
	}
	// The flight's work, and the tag's record, are not the first caller's
	// alone: others wait on them.
	ctx, cancel := detached(ctx)
	defer cancel()
	m, source, err := s.fetchManifest(ctx, rt, oci.Reference{Tag: tag}, accept)
	if err != nil {
		return nil, err
	}
	now := s.now()
	e := cacheindex.TagEntry{Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body)), Fetched: now, Checked: now, Source: source}
	if err := s.putTag(ctx, rt, tag, e); err != nil {
		if !cannotCache(err) {
			return nil, fmt.Errorf("record tag: %w", err)
		}
		s.log.Error("cache disk is full or read-only; serving the tag without recording it", slog.String("tag", tag), slog.Any("error", err))
	}
	return m, nil
}

// fetchManifest GETs a manifest from the route's upstream or, when that
// fails as down, 5xx or rate limited, from the members of its fallback
// chain in turn (for a tag, members trusted for tags only; by digest, any
// member, since the bytes are checked against the digest). source is the
// member that answered, "" for the upstream itself. What a member served
// is recorded as the member's holdings (storeManifest), never as the
// upstream's: a member supplies bytes, it does not vouch for the upstream.
func (s *Service) fetchManifest(ctx context.Context, rt route, ref oci.Reference, accept []string) (m *Manifest, source string, err error) {
	kind := fallbackManifest
	if !ref.IsDigest() {
		kind = fallbackTag
	}
	got, err := s.onChain(ctx, rt, kind, func(r route) error {
		var err error
		m, err = s.fetchManifestAt(ctx, r, ref, accept)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if got.up != rt.up {
		source = got.up.Name
	}
	return m, source, nil
}

// fetchManifestAt GETs a manifest from the route's upstream (once for
// concurrent identical requests, in this process and in the cluster),
// verifies and stores it.
func (s *Service) fetchManifestAt(ctx context.Context, rt route, ref oci.Reference, accept []string) (*Manifest, error) {
	if err := s.keepReserve(ctx, rt); err != nil { // before joining: a flight is not the caller's
		return nil, err
	}
	key := "get\x00" + rt.up.Name + "\x00" + rt.repo + "\x00" + ref.String()
	v, err, _ := s.flights.Do(key, func() (any, error) {
		if !ref.IsDigest() { // a tag's fetch is coalesced by fetchTag
			return s.fetchManifestOnce(ctx, rt, ref, accept)
		}
		stored := func() (any, bool) {
			m, err := s.storedManifest(ctx, ref.Digest)
			return m, err == nil
		}
		return s.clusterOnce(ctx, key, func() (any, error) {
			if m, ok := stored(); ok { // another replica stored it just now
				return m, nil
			}
			return s.fetchManifestOnce(ctx, rt, ref, accept)
		}, stored)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Manifest), nil
}

// fetchManifestOnce GETs, verifies and stores one manifest.
func (s *Service) fetchManifestOnce(ctx context.Context, rt route, ref oci.Reference, accept []string) (any, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	um, err := rt.up.Client.ManifestGet(ctx, rt.repo, ref, accept)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Body: um.Body, MediaType: um.MediaType, Digest: um.Digest}
	if err := s.storeManifest(ctx, rt, m); err != nil {
		if !cannotCache(err) {
			return nil, err
		}
		// Serve what we have; it is just not cached.
		s.log.Error("cache disk is full or read-only; serving the manifest without caching it", slog.String("digest", m.Digest.String()), slog.Any("error", err))
	}
	return m, nil
}

// storeManifest writes a verified manifest to the store and the index.
func (s *Service) storeManifest(ctx context.Context, rt route, m *Manifest) error {
	// The route's upstream served these verified bytes: recorded before
	// the store shows them, so no request finds them without their origin.
	if err := s.putOrigin(ctx, rt, m.Digest); err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	if _, err := s.store.Stat(ctx, m.Digest); err != nil {
		w, err := s.store.Create(ctx, m.Digest)
		if err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
		defer w.Close()
		if _, err := w.Write(m.Body); err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
		if err := w.Commit(ctx, int64(len(m.Body))); err != nil {
			return fmt.Errorf("store manifest: %w", err)
		}
	}
	e := cacheindex.ManifestEntry{MediaType: m.MediaType, Size: int64(len(m.Body)), Refs: oci.References(m.Body)}
	if err := s.putManifestEntry(ctx, rt, m.Digest, e); err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}
	s.mem.putManifest(m)
	s.rememberSizes(rt, m)
	return nil
}

// storedManifest reads a manifest from the store with its media type from
// the index.
func (s *Service) storedManifest(ctx context.Context, d digest.Digest) (*Manifest, error) {
	if m := s.mem.manifest(d); m != nil {
		s.index.Touch(d)
		return m, nil
	}
	e, ok, err := s.index.Manifest(ctx, d)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, blobstore.ErrNotFound
	}
	b, err := s.store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	if b.Size() > oci.MaxManifestSize {
		return nil, errors.New("stored manifest too large")
	}
	body, err := io.ReadAll(b)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", d, err)
	}
	// Manifests are small: hash every one read from disk, so a file
	// changed on disk is never served under its old digest.
	if got := d.Algorithm().FromBytes(body); got != d {
		s.dropDamaged(ctx, d, "its bytes hash to "+got.String())
		return nil, blobstore.ErrNotFound
	}
	s.index.Touch(d)
	m := &Manifest{Body: body, MediaType: e.MediaType, Digest: d}
	s.mem.putManifest(m)
	return m, nil
}

// touchRefs marks what a served manifest references as used now: a client
// that has an image's layers pulls only its manifests, and those layers
// must not sink in the eviction order while the image is in use.
func (s *Service) touchRefs(m *Manifest) {
	if _, refs := s.mem.manifestRefs(m.Digest); refs != nil {
		s.index.TouchAll(refs)
		return
	}
	s.index.TouchAll(oci.References(m.Body))
}

// rememberSizes keeps the sizes an image manifest of the route's upstream
// gives its config and layers, to bound their fills.
func (s *Service) rememberSizes(rt route, m *Manifest) {
	sizes := map[digest.Digest]int64{}
	for _, b := range blobsOf(m.Body) {
		if b.Size > 0 {
			sizes[b.Digest] = b.Size
		}
	}
	if len(sizes) > 0 {
		s.mem.putBlobSizes(rt.up.Name, rt.repo, sizes)
	}
}

// blobsOf lists the config and layers of an image manifest (not of an
// index), skipping foreign layers that live at other URLs.
func blobsOf(body []byte) []v1.Descriptor {
	mc, err := oci.DecodeContent(body)
	if err != nil {
		return nil
	}
	var out []v1.Descriptor
	if mc.Config.Digest.Validate() == nil {
		out = append(out, mc.Config)
	}
	for _, l := range mc.Layers {
		if l.Digest.Validate() == nil && !oci.IsForeign(l) {
			out = append(out, l)
		}
	}
	return out
}

// accepts is the Accept list sent upstream: the client's types plus every
// manifest type regcache stores, so one client's narrow Accept cannot pin a
// tag to a narrower manifest for everyone.
func accepts(header []string) []string {
	var out []string
	for _, v := range header {
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(out, t) && len(out) < maxAccept {
				out = append(out, t)
			}
		}
	}
	for _, t := range oci.ManifestMediaTypes {
		if !slices.ContainsFunc(out, func(x string) bool { return strings.HasPrefix(x, t) }) {
			out = append(out, t)
		}
	}
	return out
}

// maxAccept bounds the media types taken from a client's Accept headers.
const maxAccept = 32

func (s *Service) negativeLeft(key string) time.Duration {
	s.negMu.Lock()
	defer s.negMu.Unlock()
	until, ok := s.negative[key]
	if !ok {
		return 0
	}
	left := until.Sub(s.now())
	if left <= 0 {
		delete(s.negative, key)
		return 0
	}
	return left
}

func (s *Service) rememberNotFound(key string) {
	if s.negativeTTL <= 0 {
		return
	}
	s.negMu.Lock()
	defer s.negMu.Unlock()
	if len(s.negative) > 10000 {
		clear(s.negative)
	}
	s.negative[key] = s.now().Add(s.negativeTTL)
}
