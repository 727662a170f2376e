// Package registry serves the read side of the OCI distribution API
// (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#pull)
// as a pull-through cache: manifests and blobs come from the store when held
// and fresh, and from the upstream otherwise, through one fill per digest.
package registry

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/upstream"
)

// Upstream is a mirrored registry as the server routes to it.
type Upstream struct {
	// Name is the registry host clients know (docker.io, ghcr.io).
	Name string
	// Aliases are Host header values that select this upstream.
	Aliases []string
	Client  *upstream.Client
}

func (u *Upstream) isDockerHub() bool { return u.Name == "docker.io" }

// Server is the mirror's registry API.
type Server struct {
	upstreams []*Upstream
	store     blobstore.Store
	index     *cacheindex.Index
	fills     *fill.Manager
	log       *slog.Logger
	now       func() time.Time
	freshness time.Duration

	authz       Authorizer
	middleware  func(http.Handler) http.Handler
	metrics     *metrics.Metrics
	negativeTTL time.Duration

	negMu       sync.Mutex
	negative    map[string]time.Time // upstream "not found" answers for tags
	prefetch    bool
	prefetchSem chan struct{}

	flights singleflight.Group // manifest fetches and tag revalidations

	listMu    sync.Mutex
	listCache map[string]cachedListing
	listBytes int64

	ctx     context.Context
	cancel  context.CancelFunc
	closeMu sync.Mutex // orders wg.Add in handlers against Close's Wait
	closed  bool
	wg      sync.WaitGroup
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithFreshness sets how long a tag is served without asking upstream
// (default 1 minute).
func WithFreshness(d time.Duration) Option { return func(s *Server) { s.freshness = d } }

// WithPrefetch turns prefetching of an image's blobs on, with at most
// parallel upstream fetches at a time (default on, 4).
func WithPrefetch(enabled bool, parallel int) Option {
	return func(s *Server) { s.prefetch, s.prefetchSem = enabled, make(chan struct{}, max(parallel, 1)) }
}

// WithMetrics sets the collectors to update (default: none).
func WithMetrics(m *metrics.Metrics) Option { return func(s *Server) { s.metrics = m } }

// WithNegativeTTL sets how long an upstream "not found" for a tag is
// remembered, so a misspelled image in a loop does not hammer the upstream
// (default 30s; 0 disables).
func WithNegativeTTL(d time.Duration) Option { return func(s *Server) { s.negativeTTL = d } }

// WithMiddleware wraps the API's routes in mw, inside the access log, so
// requests mw answers itself (refused networks, a token endpoint) are
// logged too.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(s *Server) { s.middleware = mw }
}

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New returns a Server. The first upstream is the default one, served at
// the root path.
func New(store blobstore.Store, index *cacheindex.Index, fills *fill.Manager, upstreams []*Upstream, opts ...Option) *Server {
	s := &Server{upstreams: upstreams, store: store, index: index, fills: fills,
		log: slog.New(slog.DiscardHandler), now: time.Now, freshness: time.Minute,
		prefetch: true, prefetchSem: make(chan struct{}, 4), listCache: map[string]cachedListing{},
		negativeTTL: 30 * time.Second, negative: map[string]time.Time{}}
	for _, o := range opts {
		o(s)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Close stops background work (prefetches) and waits for it. Fills are
// stopped by their Manager.
func (s *Server) Close() {
	s.closeMu.Lock()
	s.closed = true
	s.cancel()
	s.closeMu.Unlock()
	s.wg.Wait()
}

// goBackground runs fn as background work Close waits for, unless the
// server is closing.
func (s *Server) goBackground(fn func()) {
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

// Handler returns the registry API with its access log.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/", s.serveV2)
	mux.HandleFunc("/v2", s.serveV2)
	if s.middleware != nil {
		return s.accessLog(s.middleware(mux))
	}
	return s.accessLog(mux)
}
