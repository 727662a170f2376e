// Package registry serves the read side of the OCI distribution API
// (https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#pull)
// over HTTP: it routes a request to an upstream, parses it into a typed
// request, asks the content service (package mirror) for the answer and
// writes it: headers, byte ranges, the error envelope and the access log.
// It never touches the store, the index, a fill or an upstream itself.
package registry

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// Content is what the registry asks of the content service for a routed
// request. *mirror.Service implements it. Errors are *oci.Error for every
// answer a client should see; any other error is an internal one.
type Content interface {
	// Registries lists the upstreams as clients name them, the default
	// first.
	Registries() []mirror.Registry
	Manifest(ctx context.Context, req mirror.Request, ref oci.Reference) (*mirror.Manifest, mirror.Outcome, error)
	Blob(ctx context.Context, req mirror.Request, d digest.Digest) (*mirror.Blob, mirror.Outcome, error)
	Tags(ctx context.Context, req mirror.Request, n int, last string) (*mirror.Listing, mirror.Outcome, error)
	Referrers(ctx context.Context, req mirror.Request, d digest.Digest, query string) (*mirror.Listing, mirror.Outcome, error)
}

// Authorizer decides whether a request may read a repository. It runs after
// routing and before the content service is asked. A non-nil error is sent
// as the answer (an *oci.Error with UNAUTHORIZED or DENIED); an Authorizer
// may set headers such as WWW-Authenticate on w before returning it.
// upstream is the upstream's name (docker.io), repo the repository there.
type Authorizer interface {
	Authorize(w http.ResponseWriter, r *http.Request, upstream, repo string) error
}

// Server is the mirror's registry API.
type Server struct {
	content    Content
	registries []mirror.Registry
	log        *slog.Logger
	authz      Authorizer
	middleware func(http.Handler) http.Handler
	metrics    *metrics.Metrics
	series     *requestSeries // the request counters by label set, of metrics
	observe    func(Served)
	clientAddr func(*http.Request) netip.Addr // nil: the peer's address
	// manifestHeaders are the header values of recent manifest answers.
	manifestHeaders *headerCache
	clientUser      func(*http.Request) string // nil: nobody logs in
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithMetrics sets the collectors to update (default: none).
func WithMetrics(m *metrics.Metrics) Option {
	return func(s *Server) { s.metrics, s.series = m, &requestSeries{m: m} }
}

// WithAuthorizer sets the access check (default: everyone may read).
func WithAuthorizer(a Authorizer) Option { return func(s *Server) { s.authz = a } }

// WithMiddleware wraps the API's routes in mw, inside the access log, so
// requests mw answers itself (refused networks, a token endpoint) are
// logged too.
func WithMiddleware(mw func(http.Handler) http.Handler) Option {
	return func(s *Server) { s.middleware = mw }
}

// New returns a Server answering from content. The first of its
// registries is the default one, served at the root path.
func New(content Content, opts ...Option) *Server {
	s := &Server{content: content, registries: content.Registries(), log: slog.New(slog.DiscardHandler), manifestHeaders: &headerCache{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Handler returns the registry API with its access log.
func (s *Server) Handler() http.Handler {
	routes := v2Routes(s.serveV2)
	if s.middleware != nil {
		return s.accessLog(s.middleware(routes))
	}
	return s.accessLog(routes)
}

// v2Routes sends /v2 and everything under /v2/ to v2, as a ServeMux with
// those two patterns would, and anything else to such a mux (a 404, or the
// redirect to a cleaned path). A clean /v2 path, nearly every request,
// skips the mux's matching and its three allocations (issue 28).
func v2Routes(v2 http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v2/", v2)
	mux.HandleFunc("/v2", v2)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect && r.RequestURI != "*" && cleanV2(escapedPath(r.URL)) {
			v2(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// escapedPath is u.EscapedPath() as cleanV2 reads it: without a RawPath
// the path itself, since escaping turns no byte into '/' or '.' and leaves
// those two as they are (EscapedPath escapes the whole path again on every
// request, 3 % of a warm hit's CPU; issue 28).
func escapedPath(u *url.URL) string {
	if u.RawPath == "" {
		return u.Path
	}
	return u.EscapedPath()
}

// cleanV2 reports whether p is /v2 or under /v2/ and is clean: no empty,
// "." or ".." segment, which the mux would redirect away.
func cleanV2(p string) bool {
	if p != "/v2" && !strings.HasPrefix(p, "/v2/") {
		return false
	}
	// One pass over the slashes, not five scans of the path (three
	// Contains were 4 % of a warm hit's CPU; issue 28).
	for i := 0; ; {
		j := strings.IndexByte(p[i:], '/')
		if j < 0 {
			return true
		}
		i += j + 1
		seg := p[i:]
		if k := strings.IndexByte(seg, '/'); k >= 0 {
			seg = seg[:k+1]
		}
		switch seg {
		case "/", ".", "./", "..", "../":
			return false
		}
	}
}
