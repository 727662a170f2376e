// Package mirror is regcache's content service: for a routed request (an
// upstream, a repository and what is asked of it) it answers with a
// manifest, a reader of a blob or a listing, or an error. It owns every rule
// of what may be served: which digests a repository holds, what the store
// and the index say, joining or starting the one fill of a digest,
// revalidating tags, serving stale content when the upstream fails, and
// prefetching an image's blobs.
//
// It is the only caller of cacheindex, blobstore, fill and upstream on the
// read path. The HTTP package (registry) parses requests, cuts ranges and
// writes headers; it never touches the store or an upstream itself.
package mirror

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/defaults"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/rules"
	"github.com/regcache/regcache/internal/upstream"
)

// Upstream is a mirrored registry.
type Upstream struct {
	// Name is the registry host clients know (docker.io, ghcr.io).
	Name string
	// Aliases are other host names clients use for it (Host header).
	Aliases []string
	Client  *upstream.Client
	// Fallback names the upstreams tried in turn, for the same repository,
	// when this one is down, answers 5xx or is rate limited.
	Fallback []string
	// TrustedTags lets this upstream's tags stand in, as a fallback member,
	// for the upstream it backs (content by digest is taken from any
	// member, since it is checked).
	TrustedTags bool
}

// Registry is how clients name a mirrored upstream, for routing.
type Registry struct {
	Name    string
	Aliases []string
}

// Request is what a client asks of one repository, after routing.
type Request struct {
	// Upstream is the upstream's Name.
	Upstream string
	// Repo is the repository's name at the upstream (library/ added for
	// Docker Hub's one-component names).
	Repo string
	// Accept is the client's Accept header values (comma-separated lists
	// of media types), as sent; they are read only when the upstream is
	// asked.
	Accept []string
	// Head is set when the client wants headers only: no body is read and
	// nothing is prefetched.
	Head bool
	// Background marks background work (`regcache warm`, by the
	// BackgroundHeader): it never spends the upstream's last
	// budget_reserve counted pulls.
	Background bool
	// Client and User name who asked (the client's address, the login;
	// "" for anonymous), for the pull policy's audit lines (an address,
	// not its text: a warm hit formats nothing).
	Client netip.Addr
	User   string
}

// CacheResult is how the cache answered a request.
type CacheResult string

// The cache's answers, a closed set (log field, metric label).
const (
	CacheHit         CacheResult = "hit"         // from the cache
	CacheMiss        CacheResult = "miss"        // fetched from the upstream for this request
	CacheStale       CacheResult = "stale"       // the upstream failed; the last good content
	CacheRevalidated CacheResult = "revalidated" // a tag the upstream confirmed unchanged
	CacheNegative    CacheResult = "negative"    // the upstream's recent "not found", remembered
)

// Outcome says how a request was answered, for the access log and the
// metrics. It is set on errors too.
type Outcome struct {
	// Cache is how the cache answered; empty when it was not consulted.
	Cache CacheResult
	// Stale is why a stale answer was served.
	Stale string
	// Joined is set on a miss that joined a fill another request started
	// (a coalesced miss: the upstream was not asked again for it).
	Joined bool
	// Rule names the rule that applied to a manifest request ("rules[2]
	// docker.io/library/*:*"), "" when none did.
	Rule string
}

// Service is the content service.
type Service struct {
	upstreams []*Upstream
	byName    map[string]*Upstream
	store     blobstore.Store
	index     Index
	fills     *fill.Manager
	committed func(size int64) // told of each commit (WithCommitted)
	log       *slog.Logger
	now       func() time.Time
	freshness time.Duration
	metrics   *metrics.Metrics

	negativeTTL time.Duration
	negMu       sync.Mutex
	negative    map[string]time.Time // upstream "not found" answers for tags

	prefetch    bool
	prefetchSem chan struct{}

	reserveCount   int     // counted pulls background work leaves to others, or
	reservePercent float64 // that share of the upstream's ratelimit-limit

	flights singleflight.Group // manifest fetches, tag revalidations, listings

	mem *memory // the warm hit path: manifests, tags, holdings

	rules atomic.Pointer[rules.Set] // per-repository freshness and immutability
	pol   policyState               // the pull policy and its decisions

	fbState            // what the fallback chains answered
	sources BlobSource // nil: fills read the upstream
	flight  FlightLock // nil: coalescing within this process only
	// redirect presigns a stored blob's URL (nil: hits are streamed).
	redirect func(ctx context.Context, d digest.Digest) (string, error)

	listMu    sync.Mutex
	listCache map[string]cachedListing
	listBytes int64

	ctx     context.Context
	cancel  context.CancelFunc
	closeMu sync.Mutex // orders wg.Add in requests against Close's Wait
	closed  bool
	wg      sync.WaitGroup
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithFreshness sets how long a tag is served without asking upstream
// (default defaults.Freshness).
func WithFreshness(d time.Duration) Option { return func(s *Service) { s.freshness = d } }

// WithPrefetch turns prefetching of an image's blobs on, with at most
// parallel upstream fetches at a time (default defaults.Prefetch, defaults.PrefetchParallel).
func WithPrefetch(enabled bool, parallel int) Option {
	return func(s *Service) { s.prefetch, s.prefetchSem = enabled, make(chan struct{}, max(parallel, 1)) }
}

// WithMetrics sets the collectors to update (default: none).
func WithMetrics(m *metrics.Metrics) Option { return func(s *Service) { s.metrics = m } }

// WithNegativeTTL sets how long an upstream "not found" for a tag is
// remembered, so a misspelled image in a loop does not hammer the upstream
// (default 30s; 0 disables).
func WithNegativeTTL(d time.Duration) Option { return func(s *Service) { s.negativeTTL = d } }

// WithManifestMemory sets how many bytes of manifests are kept in memory
// for warm hits (default 32 MiB; 0 turns the memory off, so every hit reads
// the index and the store).
func WithManifestMemory(bytes int64) Option { return func(s *Service) { s.mem.maxBytes = bytes } }

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a Service. The first upstream is the default one. It
// records what fills establishes in index (fill.Manager.SetHooks): give
// each fill manager to one Service.
func New(store blobstore.Store, index Index, fills *fill.Manager, upstreams []*Upstream, opts ...Option) *Service {
	s := &Service{upstreams: upstreams, byName: map[string]*Upstream{}, store: store, index: index, fills: fills,
		log: slog.New(slog.DiscardHandler), now: time.Now, freshness: defaults.Freshness,
		prefetch: defaults.Prefetch, prefetchSem: make(chan struct{}, defaults.PrefetchParallel), listCache: map[string]cachedListing{}, reservePercent: defaults.BudgetReservePercent,
		fbState:     fbState{fbStats: map[string]*FallbackState{}},
		negativeTTL: 30 * time.Second, negative: map[string]time.Time{}, mem: newMemory(32 << 20), pol: newPolicyState()}
	for _, u := range upstreams {
		s.byName[u.Name] = u
	}
	for _, o := range opts {
		o(s)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.recordFills()
	return s
}

// Registries lists the upstreams as clients name them, the default first.
func (s *Service) Registries() []Registry {
	out := make([]Registry, len(s.upstreams))
	for i, u := range s.upstreams {
		out[i] = Registry{Name: u.Name, Aliases: u.Aliases}
	}
	return out
}

// Forget drops digests from memory: the caller deleted them from the
// store (eviction, cache rm), so the next request reads the index again.
func (s *Service) Forget(ds ...digest.Digest) { s.mem.forget(ds...) }

// ForgetTag drops a tag (every tag of the repository for tag "") from
// memory: `cache invalidate` deleted it from the index, so the next
// request reads the index, finds nothing and asks the upstream. Other
// replicas of a cluster read the shared index again within
// sharedTagMemory.
func (s *Service) ForgetTag(upstream, repo, tag string) { s.mem.forgetTags(upstream, repo, tag) }

// sharedTagMemory is how long a replica of a cluster serves a tag from
// memory before it reads the shared index again: a tag another replica
// invalidated (or moved) is seen within it, for one index read per tag
// per replica per second at most.
const sharedTagMemory = time.Second

// tagMemory is how long a tag in memory is trusted: for ever (it is
// written through) on one node, sharedTagMemory in a cluster.
func (s *Service) tagMemory() time.Duration {
	if s.flight == nil {
		return 0
	}
	return sharedTagMemory
}

// Close stops background work (prefetches) and waits for it. Fills are
// stopped by their Manager.
func (s *Service) Close() {
	s.closeMu.Lock()
	s.closed = true
	s.cancel()
	s.closeMu.Unlock()
	s.wg.Wait()
}

// goBackground runs fn as background work Close waits for, unless the
// service is closing.
func (s *Service) goBackground(fn func()) {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// route is a request resolved to its upstream.
type route struct {
	up   *Upstream
	repo string
}

func (s *Service) route(req Request) (route, error) {
	up := s.byName[strings.ToLower(req.Upstream)]
	if up == nil {
		return route{}, errNotConfigured(req.Upstream)
	}
	return route{up: up, repo: req.Repo}, nil
}

func (s *Service) countStale(rt route) {
	if s.metrics != nil {
		s.metrics.Stale.WithLabelValues(rt.up.Name).Inc()
	}
}

// upstreamTimeout bounds one coalesced manifest, tag or listing request.
// It is detached from the client that started it (others may be waiting on
// the same answer), so it needs its own bound on a stalled body.
const upstreamTimeout = 2 * time.Minute

func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), upstreamTimeout)
}

// BlobSource makes the fill source of a blob of the cluster (see
// WithBlobSource): direct fetches from the upstream; fromPeer is set when
// another replica asked for the blob.
type BlobSource func(upstream, repo string, d digest.Digest, size int64, fromPeer bool, direct fill.Source) fill.Source

// WithBlobSource sets how a fill's source is chosen (default: the
// upstream). A cluster streams from the replica fetching the digest.
func WithBlobSource(fn BlobSource) Option { return func(s *Service) { s.sources = fn } }

// sourceFor is the fill source of d on the route.
func (s *Service) sourceFor(rt route, d digest.Digest, size int64, fromPeer bool) fill.Source {
	direct := s.blobSource(rt, d)
	if s.sources == nil {
		return direct
	}
	return s.sources(rt.up.Name, rt.repo, d, size, fromPeer, direct)
}

// WithRedirect answers hits on blobs not on local disk with a redirect to
// the URL fn gives (storage.s3.redirect: a presigned GET).
func WithRedirect(fn func(ctx context.Context, d digest.Digest) (string, error)) Option {
	return func(s *Service) { s.redirect = fn }
}

// FlightLock runs fn on one replica of the cluster at a time for key; a
// replica that finds it running elsewhere waits for it to end and returns
// without running fn (it then reads what the other one recorded).
type FlightLock func(ctx context.Context, key string, fn func())

// WithFlightLock makes tag fetches, revalidations and manifest fetches by
// digest happen once across the cluster, not once per replica.
func WithFlightLock(fn FlightLock) Option { return func(s *Service) { s.flight = fn } }

// clusterOnce runs fn under the cluster's flight lock. When another replica
// ran it, after reads its result from the shared index; if that finds
// nothing, fn runs here.
func (s *Service) clusterOnce(ctx context.Context, key string, fn func() (any, error), after func() (any, bool)) (any, error) {
	if s.flight == nil {
		return fn()
	}
	var v any
	var err error
	ran := false
	s.flight(ctx, key, func() { ran = true; v, err = fn() })
	if ran {
		return v, err
	}
	if v, ok := after(); ok {
		return v, nil
	}
	return fn()
}

// sharedTag is a tag's entry as the whole cluster knows it: from the index
// when replicas share one (another may have checked it since this one
// remembered it), else as tag reads it.
func (s *Service) sharedTag(ctx context.Context, rt route, tag string) (cacheindex.TagEntry, bool, error) {
	if s.flight == nil {
		return s.tag(ctx, rt, tag)
	}
	e, ok, err := s.index.Tag(ctx, rt.up.Name, rt.repo, tag)
	if ok && err == nil {
		s.mem.putTag(tagKey{rt.up.Name, rt.repo, tag}, e)
	}
	return e, ok, err
}
