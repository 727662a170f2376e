// Package admin is the admin listener's surface: health, readiness,
// metrics, /status, the cache API and the dashboard, the admin token, and
// what they judge and count (upstream states, degraded reasons, requests
// served, the dashboard's history and top lists). It reads the running
// mirror through a Source the app implements; /status, the dashboard and
// `regcache status` all render its one Status.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/registry"
	"github.com/regcache/regcache/internal/ui"
	"github.com/regcache/regcache/internal/upstream"
)

// Source is what only the running mirror knows. Every method is cheap
// enough to call on each admin request; none fails (a part that cannot
// answer reports it in its own value).
type Source interface {
	// Config is the configuration in effect (after SIGHUPs).
	Config() config.Config
	// Totals are the index's totals: running ones on one node, a
	// periodic count on a shared index.
	Totals() cacheindex.Totals
	// MaxSize is storage.max_size in bytes as in effect (0: no cap).
	MaxSize() int64
	// Settings are the options in effect, by YAML key, as each running
	// part holds them (secrets left out).
	Settings() map[string]string
	// Store is the content store; LocalStore reports that it is the local
	// disk (only there does storage.max_size bound what the disk holds).
	Store() Store
	LocalStore() bool
	// Upstreams are the configured upstreams, in order, with the content
	// service's view of each.
	Upstreams() []Upstream
	// Fills are the upstream fetches.
	Fills() Fills
	// Pinned is the bytes of images pinned by rules, as the last eviction
	// pass found them, and whether they alone exceed storage.max_size.
	Pinned() (bytes int64, overCap bool)
	// Cluster is this replica's view of its cluster; nil on one node.
	Cluster() *ClusterStatus
	// Policy is the pull policy's mode and recent denials; nil without a
	// policy.
	Policy() *PolicyStatus
	// PolicyCheck says what the pull policy decides for an image (as
	// docker pull names it) and why, without a pull; an error for a name
	// that does not parse, an upstream not configured, or a manifest the
	// upstream does not have.
	PolicyCheck(ctx context.Context, image string) (mirror.PolicyAnswer, error)
}

// Store is the store's health as /readyz and the degraded judgement ask it.
type Store interface {
	// Available is the free space fills pass through (the local disk).
	Available() (int64, error)
	// Readable is nil while stored content can be served; Writable while
	// new content can be stored.
	Readable(ctx context.Context) error
	Writable(ctx context.Context) error
}

// Fills are the fills' counts and progress (fill.Manager).
type Fills interface {
	Active() int
	Totals() fill.Totals
	Progress() []fill.Progress
}

var _ Fills = (*fill.Manager)(nil)

// Upstream is one upstream as the mirror uses it.
type Upstream struct {
	Name   string
	Client *upstream.Client
	// Reserve is the counted pulls background work leaves to clients
	// (budget_reserve, as the content service applies it).
	Reserve int
	// Fallback is the fallback chain's state; nil without a chain.
	Fallback *mirror.FallbackState
}

// Deps are the parts the admin surface works with directly.
type Deps struct {
	Metrics *prometheus.Registry // served on /metrics; the admin surface registers its collectors there
	Log     *slog.Logger
	Ops     *cache.Ops   // the cache API's work
	Scrub   *cache.Scrub // its status in /cache/stats and on the dashboard
	Index   cacheindex.Backend
	Fleet   *fleet.Table // the clients served and the canary arrivals; nil: none kept
}

// Admin is the admin listener's surface over a running mirror.
type Admin struct {
	src     Source
	d       Deps
	auth    *auth
	started time.Time
	stats   *stats   // requests served, for the dashboard and status
	history *history // the dashboard's charts
	totals  *totalsCounter
	// clients are the upstreams' clients by name (fixed while the mirror runs).
	clients func() map[string]*upstream.Client
}

// New builds the admin surface over src and registers its collectors on
// d.Metrics. Its Observe must see every answered request (registry.WithObserver).
func New(src Source, d Deps) *Admin {
	cfg := src.Config()
	names := make([]string, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		names = append(names, u.Name)
	}
	a := &Admin{src: src, d: d, started: time.Now(), history: newHistory(historySamples),
		auth:  newAuth(func() string { return src.Config().AdminToken }, d.Log),
		stats: newStats(metrics.NewSavings(d.Metrics, results, sources, names), credentialed(cfg))}
	a.stats.spent = a.manifestGets // pulls saved are net of the mirror's own manifest GETs
	a.totals = newTotalsCounter(d.Index, d.Log)
	a.clients = sync.OnceValue(func() map[string]*upstream.Client {
		m := map[string]*upstream.Client{}
		for _, u := range src.Upstreams() {
			m[u.Name] = u.Client
		}
		return m
	})
	metrics.RegisterState(d.Metrics, a.metricsState)
	d.Metrics.MustRegister(newDegradedCollector(a))
	a.auth.register(d.Metrics)
	a.registerUpstreams()
	if d.Fleet != nil {
		a.registerFleet()
	}
	return a
}

// Observe records one answered request (registry.WithObserver).
func (a *Admin) Observe(sv registry.Served) {
	if !a.observeFleet(sv) {
		a.stats.observe(sv)
	}
}

// Run samples the dashboard's history until ctx ends.
func (a *Admin) Run(ctx context.Context) { a.history.run(ctx, historyEvery, a.sample) }

// Handler serves health, readiness, metrics, status, the cache API and
// the dashboard.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.d.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", a.serveStatus)
	a.cacheRoutes(mux)                                      // regcache cache --admin
	mux.HandleFunc("GET /fleet/canary", a.serveCanary)      // regcache client ... status --verify
	mux.HandleFunc("GET /policy/check", a.servePolicyCheck) // regcache policy check
	dash := ui.New(ui.SourceFunc(a.dashboardSnapshot), ui.WithLogger(a.d.Log))
	mux.Handle("GET /{$}", dash) // the dashboard; other paths stay 404
	mux.Handle("GET "+ui.PathData, dash)
	mux.Handle("GET "+ui.PathAssets, dash)
	return mux
}

func (a *Admin) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	st := a.Status()
	if !a.auth.maySeePrivate(r) {
		st.withoutNames()
	}
	_ = json.NewEncoder(w).Encode(st)
}

// servePolicyCheck answers what the pull policy decides for ?image=
// (regcache policy check). The answer names a repository and may ask the
// upstream, so it asks what views of private names do (loopback, or the
// admin token).
func (a *Admin) servePolicyCheck(w http.ResponseWriter, r *http.Request) {
	if !a.auth.maySeePrivate(r) {
		a.auth.refuse(w)
		return
	}
	ans, err := a.src.PolicyCheck(r.Context(), r.URL.Query().Get("image"))
	if err != nil {
		a.cacheError(w, err, true)
		return
	}
	writeJSON(w, ans)
}

// manifestGets is how many manifest GETs the mirror sent the upstream
// called name (its own client, not its fallback members: they do not
// spend its limit); 0 for a name it does not know.
func (a *Admin) manifestGets(name string) int64 {
	if c := a.clients()[name]; c != nil {
		return c.ManifestGets()
	}
	return 0
}
