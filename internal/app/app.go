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
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regcache/regcache/internal/access"
	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/registry"
	"github.com/regcache/regcache/internal/ui"
	"github.com/regcache/regcache/internal/upstream"
)

// App is a configured, not yet listening mirror.
type App struct {
	cfg   config.Config
	log   *slog.Logger
	store appStore
	index cacheindex.Backend
	// disk and bolt are store and index on one node (local disk and bbolt),
	// nil on S3 or Redis: the scrub, the cache API and by-image eviction
	// work on them.
	disk *disk.Store
	bolt *cacheindex.Index
	// sharedTotals is totals' count of a shared index.
	sharedTotals struct {
		mu sync.Mutex
		t  cacheindex.Totals
		at time.Time
	}
	storeRoot string
	cluster   *cluster.Cluster
	closeRest func()
	fills     *fill.Manager
	content   *mirror.Service
	registry  *registry.Server
	upstreams []*mirror.Upstream
	certs     *certReloader
	access    *access.Access
	metrics   *prometheus.Registry

	evictMu  sync.Mutex                       // one eviction at a time
	evictNow chan struct{}                    // a commit took the store over storage.max_size
	maxSize  atomic.Int64                     // storage.max_size in bytes, read by commits as they land
	clock    atomic.Pointer[func() time.Time] // time.Now; tests set another (setClock)
	scrub    scrubState
	capNote  string // the cap applied at start, in words (CapSummary)

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
	a := &App{cfg: cfg, log: log, store: store, index: index, storeRoot: st.root, cluster: st.cluster, closeRest: st.close, evictNow: make(chan struct{}, 1)}
	a.disk, _ = store.(*disk.Store)
	a.bolt, _ = index.(*cacheindex.Index)
	if err := a.applyCap(); err != nil {
		index.Close()
		return nil, err
	}
	// After a clean stop the index and the store agreed; after a crash (or
	// with a new or rebuilt index) every entry and file is checked.
	if a.bolt == nil || !a.bolt.Clean {
		if err := a.reconcile(ctx); err != nil {
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
	a.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_fills_active", Help: "Upstream blob fetches running."},
		func() float64 { return float64(a.fills.Active()) }))
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
	m := metrics.New(a.metrics)
	a.started, a.stats, a.history = time.Now(), newStats(metrics.NewSavings(a.metrics, results, sources, a.upstreamNames()), credentialed(cfg)), newHistory(historySamples)
	a.stats.spent = a.manifestGets // pulls saved are net of the mirror's own manifest GETs
	metrics.RegisterState(a.metrics, a.metricsState)
	a.metrics.MustRegister(newDegradedCollector(a))
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
			Client:       clients[i].Client})
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
		_ = json.NewEncoder(w).Encode(a.Status())
	})
	a.cacheRoutes(mux) // regcache cache --admin
	dash := a.dashboardHandler()
	mux.Handle("GET /{$}", dash) // the dashboard; other paths stay 404
	mux.Handle("GET "+ui.PathData, dash)
	mux.Handle("GET "+ui.PathAssets, dash)
	return mux
}

// writable checks that new content can be written where the store puts
// it (its temporary and blob directories).
func (a *App) writable() error {
	for _, dir := range []string{filepath.Join(a.storeRoot, "tmp"), filepath.Join(a.storeRoot, "blobs")} {
		f, err := os.CreateTemp(dir, ".readyz-*")
		if err != nil {
			return err
		}
		f.Close()
		os.Remove(f.Name())
	}
	return nil
}

// Status is what `regcache status` shows.
type Status struct {
	Upstreams   []UpstreamStatus `json:"upstreams"`
	ActiveFills int              `json:"activeFills"`
	// State is healthy or degraded; Degraded says what is, one sentence each.
	State    string   `json:"state"`
	Degraded []string `json:"degraded,omitempty"`
	// Reasons are Degraded's reasons, in the same order, as
	// regcache_degraded's reason label names them.
	Reasons []string  `json:"reasons,omitempty"`
	Started time.Time `json:"started"`
	Time    time.Time `json:"time"`
	// Requests are the counts since start.
	Requests RequestTotals `json:"requests"`
	Fills    []FillStatus  `json:"fills"`
	Cache    CacheStatus   `json:"cache"`
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
	scrubEvery, _ := a.scrubPace()
	go func() { defer close(scrubbed); a.scrubLoop(evictCtx, scrubEvery) }()
	defer func() { stopEvict(); <-evicted; <-scrubbed }()
	defer a.watch(ctx)() // health probes and the dashboard's history
	if a.cluster != nil {
		beat := make(chan struct{})
		go func() { defer close(beat); a.cluster.Run(evictCtx) }()
		defer func() { stopEvict(); <-beat }()
	}
	var admin *http.Server
	if adminLn != nil {
		admin = &http.Server{Handler: a.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
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
	drain := a.cfg.ShutdownTimeout
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

// reconcile makes the index and the store agree after a crash: index
// entries whose files are gone are dropped; files the index does not know
// (committed just before a crash) are verified and adopted, or removed.
// Temporary files were already removed when the store opened.
func (a *App) reconcile(ctx context.Context) error {
	store, err := a.diskStore()
	if err != nil {
		return nil // S3: shared by replicas, no local crash to repair
	}
	var gone []digest.Digest
	err = a.index.Blobs(func(d digest.Digest, _ cacheindex.BlobEntry) error {
		if _, err := a.store.Stat(ctx, d); err != nil {
			gone = append(gone, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile index: %w", err)
	}
	for _, d := range gone {
		if err := a.index.DeleteBlob(d); err != nil {
			return err
		}
	}
	var orphans []digest.Digest
	err = a.store.Walk(ctx, func(d digest.Digest, _ int64) error {
		_, isBlob, _ := a.index.Blob(d)
		_, isManifest, _ := a.index.Manifest(d)
		if !isBlob && !isManifest {
			orphans = append(orphans, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile store: %w", err)
	}
	if bi, ok := a.index.(*cacheindex.Index); ok && bi.Damaged != "" {
		a.log.Error("the cache index was damaged; moved aside and rebuilt from the store (every file verified; tags are fetched again on demand)",
			slog.String("moved_to", bi.Damaged), slog.Any("damage", bi.Damage), slog.Int("files", len(orphans)))
	}
	adopted := 0
	for _, d := range orphans {
		if err := store.Verify(ctx, d); err != nil {
			a.log.Warn("removed a cache file that failed verification", slog.String("digest", d.String()), slog.Any("error", err))
			continue
		}
		size, err := a.store.Stat(ctx, d)
		if err != nil {
			continue
		}
		if err := adopt(ctx, store, a.index, d, size); err != nil {
			return err
		}
		adopted++
	}
	if len(gone) > 0 || len(orphans) > 0 {
		a.log.Info("reconciled cache after restart", slog.Int("dropped_entries", len(gone)), slog.Int("orphans_adopted", adopted), slog.Int("orphans_removed", len(orphans)-adopted))
	}
	return nil
}

// adopt records a verified file the index does not know: a manifest (its
// media type and references restored; no repository holds it until an
// upstream confirms one) or a blob.
func adopt(ctx context.Context, store *disk.Store, index cacheindex.Backend, d digest.Digest, size int64) error {
	if size <= oci.MaxManifestSize {
		if b, err := store.Open(ctx, d); err == nil {
			body, rerr := io.ReadAll(b)
			b.Close()
			if rerr == nil {
				if e, ok := mirror.ManifestEntryOf(body); ok {
					return index.PutManifestEntry(d, e)
				}
			}
		}
	}
	return index.PutBlob(d, size)
}
