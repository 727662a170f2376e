// Package app wires regcache's server together from a config.Config: store,
// index, fills, upstream clients, registry API and admin endpoints. The
// serve command and end-to-end tests both start the mirror through it.
package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regcache/regcache/internal/access"
	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/registry"
	"github.com/regcache/regcache/internal/ui"
	"github.com/regcache/regcache/internal/upstream"
)

// App is a configured, not yet listening mirror.
type App struct {
	// cfg is the configuration in effect: the one the mirror started
	// with, and what each SIGHUP applied of a new one (config()).
	cfg   atomic.Pointer[config.Config]
	log   *slog.Logger
	store appStore
	index cacheindex.Backend
	// bolt is the index on one node (bbolt), nil on Redis: after a
	// clean stop it needs no reconciliation.
	bolt *cacheindex.Index
	// ops is the cache's upkeep on store and index (eviction, the cache
	// commands), whichever they are.
	ops *cache.Ops
	// sharedTotals is totals' count of a shared index.
	sharedTotals struct {
		mu sync.Mutex
		t  cacheindex.Totals
		at time.Time
		// base is the cluster's committed-bytes counter read just before
		// the count (baseOK: it was read), so commits since are known.
		base   int64
		baseOK bool
	}
	cluster   *cluster.Cluster
	closeRest func()
	fills     *fill.Manager
	content   *mirror.Service
	registry  *registry.Server
	upstreams []*mirror.Upstream
	certs     *certReloader
	access    *access.Access
	metrics   *prometheus.Registry
	adminAuth adminAuth // wrong admin tokens: counted, slowed down

	evictMu  sync.Mutex                       // one eviction at a time
	evictNow chan struct{}                    // a commit took the store over storage.max_size
	maxSize  atomic.Int64                     // storage.max_size in bytes, read by commits as they land
	clock    atomic.Pointer[func() time.Time] // time.Now; tests set another (setClock)
	scrub    *cache.Scrub

	started time.Time
	stats   *stats   // requests served, for the dashboard and status
	history *history // the dashboard's charts
}

// New opens the data directory and builds every part. Close releases them.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	st, err := openStorage(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	store, index := st.store, st.index
	if pct := cfg.Storage.MaxSizePercent; pct > 0 {
		if cfg.Storage.MaxSize, err = capBytes(cfg); err != nil {
			index.Close()
			return nil, err
		}
		log.Info("storage.max_size set from a share of the file system", slog.Float64("percent", pct), slog.Int64("bytes", cfg.Storage.MaxSize))
	}
	a := &App{log: log, store: store, index: index, cluster: st.cluster, closeRest: st.close, evictNow: make(chan struct{}, 1)}
	a.cfg.Store(&cfg)
	a.maxSize.Store(cfg.Storage.MaxSize)
	a.scrub = a.newScrub(cfg)
	a.bolt, _ = index.(*cacheindex.Index)
	a.ops = a.newOps()
	// After a clean stop the index and the store agreed; after a crash (or
	// with a new or rebuilt index) every entry and file is checked.
	if _, local := store.(*disk.Store); local && (a.bolt == nil || !a.bolt.Clean) {
		if err := cache.Reconcile(ctx, store, index, log); err != nil {
			index.Close()
			return nil, err
		}
	}
	a.fills = fill.New(store, fill.WithLogger(log), fill.WithTimeout(cfg.FillTimeout), fill.WithFreeSpace(store.Available),
		fill.WithMaxSize(cfg.Storage.MaxBlobSize),
		fill.WithOnCommit(func(d digest.Digest, size int64) {
			if err := index.PutBlob(d, size); err != nil {
				log.Error("index blob", slog.String("digest", d.String()), slog.Any("error", err))
			}
			a.committed(size)
		}),
		fill.WithOnVerified(func(d digest.Digest, origin string) {
			// Before the commit shows the blob: a request under this
			// upstream's name must not find it stored without its origin.
			if err := index.PutOrigin(origin, d); err != nil {
				log.Error("index blob origin", slog.String("digest", d.String()), slog.Any("error", err))
			}
		}))
	for i, u := range cfg.Upstreams {
		pw, err := cfg.Password(i)
		if err != nil {
			a.Close()
			return nil, err
		}
		var opts []upstream.Option
		if u.PasswordFile != "" { // re-read at each token request: rotation needs no restart
			i, user := i, u.Username
			opts = append(opts, upstream.WithAuth(auth.WithCredentialSource(func() (auth.Credentials, error) {
				pw, err := cfg.Password(i)
				return auth.Credentials{Username: user, Password: pw}, err
			})))
		}
		c, err := upstream.New(u.Name, u.URL, auth.Credentials{Username: u.Username, Password: pw}, append(opts, upstream.WithLogger(log))...)
		if err != nil {
			a.Close()
			return nil, err
		}
		a.upstreams = append(a.upstreams, &mirror.Upstream{Name: u.Name, Aliases: u.Aliases, Client: c,
			Fallback: u.Fallback, TrustedTags: u.TrustedTags})
	}
	a.metrics = prometheus.NewRegistry()
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, u := range a.upstreams {
		c := u.Client
		metrics.UpstreamGauges(a.metrics, u.Name,
			func() float64 { return float64(c.RateLimit().Limit) },
			func() float64 { return float64(c.RateLimit().Remaining) },
			func() float64 {
				if h := c.Health(); h.Down || !h.LimitedUntil.IsZero() {
					return 1
				}
				return 0
			})
		metrics.BreakerGauges(a.metrics, u.Name, func() []metrics.Breaker {
			var out []metrics.Breaker
			for _, b := range c.Health().Breakers {
				out = append(out, metrics.Breaker{Scope: b.Scope, Open: b.Open})
			}
			return out
		})
	}
	if a.cluster != nil {
		a.metrics.MustRegister(clusterMetrics(a.cluster)...)
	}
	a.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_fills_active", Help: "Upstream blob fetches running."},
		func() float64 { return float64(a.fills.Active()) }))
	a.registerScrubMetrics()
	acc, err := newAccess(cfg, a.upstreams, log)
	if err != nil {
		a.Close()
		return nil, err
	}
	a.access = acc
	a.metrics.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_login_failures_total", Help: "Client logins refused for wrong credentials."},
			func() float64 { f, _ := acc.LoginFailures(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_login_throttled_total", Help: "Client login attempts refused unchecked: their address failed too many logins lately."},
			func() float64 { _, th := acc.LoginFailures(); return float64(th) }))
	a.registerAuthFailures()
	m := metrics.New(a.metrics)
	a.started, a.stats, a.history = time.Now(), newStats(metrics.NewSavings(a.metrics, results, sources, a.upstreamNames()), credentialed(cfg)), newHistory(historySamples)
	metrics.RegisterState(a.metrics, a.metricsState)
	a.content = mirror.New(store, index, a.fills, a.upstreams, append([]mirror.Option{
		mirror.WithMetrics(m), mirror.WithLogger(log), mirror.WithFreshness(cfg.Freshness),
		mirror.WithPrefetch(cfg.Prefetch.Enabled, cfg.Prefetch.Parallel),
		mirror.WithBudgetReserve(cfg.BudgetReserve.Count, cfg.BudgetReserve.Percent)}, clusterOptions(cfg, store, a.cluster)...)...)
	a.registry = registry.New(a.content,
		registry.WithAuthorizer(acc), registry.WithMiddleware(acc.Middleware),
		registry.WithMetrics(m), registry.WithLogger(log), registry.WithObserver(a.stats.observe))
	if cfg.TLS.Cert != "" {
		if a.certs, err = newCertReloader(cfg.TLS.Cert, cfg.TLS.Key, log); err != nil {
			a.Close()
			return nil, err
		}
	}
	return a, nil
}

// capBytes is storage.max_size given as a share of the data directory's
// file system, in bytes.
func capBytes(cfg config.Config) (int64, error) {
	pct := cfg.Storage.MaxSizePercent
	var st syscall.Statfs_t
	if err := syscall.Statfs(cfg.Data, &st); err != nil {
		return 0, fmt.Errorf("storage.max_size %g%%: size of the file system of %s: %w", pct, cfg.Data, err)
	}
	return int64(float64(st.Blocks) * float64(st.Frsize) * pct / 100), nil
}

// config is the configuration in effect.
func (a *App) config() config.Config { return *a.cfg.Load() }

// newAccess builds the access control from the configuration; clients
// are the mirror's own clients of the upstreams, in the same order.
func newAccess(cfg config.Config, clients []*mirror.Upstream, log *slog.Logger) (*access.Access, error) {
	return access.New(accessConfig(cfg, clients), access.WithLogger(log), access.WithMaxRequestsPerClient(maxRequestsPerClient))
}

// accessConfig is the access control's part of cfg.
func accessConfig(cfg config.Config, clients []*mirror.Upstream) access.Config {
	ac := access.Config{Allow: cfg.Access.Allow, TrustedProxies: cfg.Access.TrustedProxies,
		Htpasswd: cfg.Access.Htpasswd, Users: cfg.Access.Users, Private: cfg.Access.Private}
	for i, u := range cfg.Upstreams {
		ac.Upstreams = append(ac.Upstreams, access.Upstream{Name: u.Name, URL: u.URL,
			Credentialed: u.Username != "" || u.Password != "" || u.PasswordFile != "",
			Client:       clients[i].Client, Fallback: u.Fallback})
	}
	return ac
}

// maxRequestsPerClient bounds one client address's requests in flight, and
// so the upstream fills it can hold open.
const maxRequestsPerClient = 256

var _ registry.Authorizer = (*access.Access)(nil)

// Handler is the registry API.
func (a *App) Handler() http.Handler { return a.withPeers(a.registry.Handler()) }

// AdminHandler serves health and status.
func (a *App) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := a.Status()
		if !a.adminMaySeePrivate(r) {
			st.withoutNames()
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	a.cacheRoutes(mux) // regcache cache --admin
	dash := a.dashboardHandler()
	mux.Handle("GET /{$}", dash) // the dashboard; other paths stay 404
	mux.Handle("GET "+ui.PathData, dash)
	mux.Handle("GET "+ui.PathAssets, dash)
	return mux
}

// Status is what `regcache status` shows.
type Status struct {
	Upstreams   []UpstreamStatus `json:"upstreams"`
	ActiveFills int              `json:"activeFills"`
	// State is healthy or degraded; Degraded says what is, one sentence each.
	State    string    `json:"state"`
	Degraded []string  `json:"degraded,omitempty"`
	Started  time.Time `json:"started"`
	Time     time.Time `json:"time"`
	// Requests are the counts since start.
	Requests RequestTotals `json:"requests"`
	Fills    []FillStatus  `json:"fills"`
	Cache    CacheStatus   `json:"cache"`
	// Settings are the options in effect, by YAML key, as each running
	// part holds them (secrets left out).
	Settings map[string]string `json:"settings"`
}

// UpstreamStatus is one upstream's state, without credentials.
type UpstreamStatus struct {
	Name          string             `json:"name"`
	URL           string             `json:"url"`
	RateLimit     upstream.RateLimit `json:"rateLimit"`
	Health        upstream.Health    `json:"health"`
	TokenRequests int64              `json:"tokenRequests"`
	// State is up, unknown, rate-limited, breaker-open or stale-serving;
	// StateText words it, Reason says why, Since since when, NextProbe
	// when it is asked next.
	State      string    `json:"state"`
	StateText  string    `json:"stateText"`
	Reason     string    `json:"reason,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	NextProbe  time.Time `json:"nextProbe,omitzero"`
	PullsSaved int64     `json:"pullsSaved"`
	// Reserve is the headroom (ratelimit-remaining) under which the
	// dashboard warns; Reset when the budget comes back (zero if unknown).
	Reserve      int       `json:"reserve"`
	Reset        time.Time `json:"reset,omitzero"`
	FetchedBytes int64     `json:"fetchedBytes"`
	// BudgetReserve is how many counted pulls background work (regcache
	// warm) leaves to other clients, from budget_reserve.
	BudgetReserve int `json:"budgetReserve"`
	// Fallback is the upstream's fallback chain and what its members
	// answered, when it has one.
	Fallback *mirror.FallbackState `json:"fallback,omitempty"`
}

// withoutNames drops what names repositories (a fallback's last cause is
// an upstream error naming the request), for callers who may not see
// private names.
func (st *Status) withoutNames() {
	for i, u := range st.Upstreams {
		if u.Fallback != nil {
			fb := *u.Fallback
			fb.LastCause = ""
			st.Upstreams[i].Fallback = &fb
		}
	}
}

// Status reports the upstreams' health and rate limits, the requests
// served, the running fills and the cache's use.
func (a *App) Status() Status {
	st := a.status()
	a.judge(&st)
	return st
}

// status is Status without the overall judgement (which tries a write).
func (a *App) status() Status {
	st := Status{ActiveFills: a.fills.Active()}
	for _, u := range a.upstreams {
		us := UpstreamStatus{Name: u.Name, URL: u.Client.URL(),
			RateLimit: u.Client.RateLimit(), Health: u.Client.Health(), TokenRequests: u.Client.TokenRequests(),
			BudgetReserve: a.content.Reserve(u)}
		if len(u.Fallback) > 0 {
			fb := a.content.Fallback(u)
			us.Fallback = &fb
		}
		st.Upstreams = append(st.Upstreams, us)
	}
	a.completeStatus(&st)
	st.Settings = a.settingsInEffect()
	return st
}

// Serve serves the registry API on ln (TLS when configured) and the admin
// API on adminLn (if not nil) until ctx is done, then shuts down gracefully.
func (a *App) Serve(ctx context.Context, ln, adminLn net.Listener) error {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// No WriteTimeout: it would cut long blob streams.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if a.certs != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: a.certs.get, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	evictCtx, stopEvict := context.WithCancel(ctx)
	evicted := make(chan struct{})
	go func() { defer close(evicted); a.evictLoop(evictCtx) }()
	scrubbed := make(chan struct{})
	go func() { defer close(scrubbed); a.scrub.Run(evictCtx) }()
	defer func() { stopEvict(); <-evicted; <-scrubbed }()
	defer a.watch(ctx)() // health probes and the dashboard's history
	if a.cluster != nil {
		beat := make(chan struct{})
		go func() { defer close(beat); a.cluster.Run(evictCtx) }()
		defer func() { stopEvict(); <-beat }()
	}
	var admin *http.Server
	if adminLn != nil {
		admin = &http.Server{Handler: a.adminHandlerGuarded(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- admin.Serve(adminLn) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Drain: stop taking connections and background prefetches, let the
	// responses in flight finish (the fills they stream go on) for up to
	// shutdown_timeout, then stop the fills left and cut what remains.
	drain := a.config().ShutdownTimeout
	if drain <= 0 {
		drain = 30 * time.Second
	}
	a.log.Info("shutting down: draining responses in flight", slog.Float64("timeout_seconds", drain.Seconds()), slog.Int("fills_running", a.fills.Active()))
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	a.content.Close()
	serr := srv.Shutdown(sctx)
	if admin != nil {
		_ = admin.Shutdown(sctx)
	}
	if errors.Is(serr, context.DeadlineExceeded) {
		a.log.Warn("shutdown_timeout reached: cutting the responses still in flight", slog.Float64("timeout_seconds", drain.Seconds()), slog.Int("fills_running", a.fills.Active()))
		_ = srv.Close()
		if admin != nil {
			_ = admin.Close()
		}
	}
	a.fills.Close()
	if a.cluster != nil {
		a.cluster.Wait() // the fills' leases released
	}
	a.log.Info("stopped", slog.Float64("drain_seconds", time.Since(start).Seconds()))
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, ignoreDeadline(serr))
}

func ignoreDeadline(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// Close stops background work and closes the index.
func (a *App) Close() error {
	if a.content != nil {
		a.content.Close()
	}
	if a.fills != nil {
		a.fills.Close()
	}
	err := a.index.Close()
	if a.closeRest != nil {
		a.closeRest()
	}
	return err
}
