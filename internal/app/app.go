// Package app wires regcache's server together from a config.Config: store,
// index, fills, upstream clients, the content service, the registry API and
// the admin surface (internal/admin, over the Source the app implements). The
// serve command and end-to-end tests both start the mirror through it.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/access"
	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/certfile"
	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/registry"
	"github.com/regcache/regcache/internal/rules"
	"github.com/regcache/regcache/internal/storage"
)

// App is a configured, not yet listening mirror.
type App struct {
	// cfg is the configuration in effect: the one the mirror started
	// with, and what each SIGHUP applied of a new one (config()).
	cfg   atomic.Pointer[config.Config]
	log   *slog.Logger
	store storage.Store
	index cacheindex.Backend
	// bolt is the index on one node (bbolt), nil on Redis: after a
	// clean stop it needs no reconciliation.
	bolt *cacheindex.Index
	// evictor keeps the cache within its limits; its Ops are the cache
	// commands, over store and index whichever they are.
	evictor   *cache.Evictor
	cluster   *cluster.Cluster
	closeRest func()
	fills     *fill.Manager
	content   *mirror.Service
	registry  *registry.Server
	upstreams mirror.Upstreams
	certs     *certfile.Pair
	access    *access.Access
	metrics   *prometheus.Registry
	admin     *admin.Admin // the admin listener's surface

	clock atomic.Pointer[func() time.Time] // time.Now; tests set another (setClock)
	scrub *cache.Scrub
	fleet *fleet.Table // the clients served, and the canary tags that arrived
}

// New opens the data directory and builds every part. Close releases them.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*App, error) {
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	st, err := storage.Open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	a := &App{log: log, store: st.Store, index: st.Index, cluster: st.Cluster, closeRest: st.Close,
		metrics: prometheus.NewRegistry()}
	a.bolt, _ = st.Index.(*cacheindex.Index)
	if err := a.build(ctx, cfg); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// build builds the parts over the opened storage, in order: the cache's
// upkeep, the fills, the upstream clients, access, the admin surface, the
// content service and the registry API, and the TLS certificate.
func (a *App) build(ctx context.Context, cfg config.Config) error {
	if err := a.openCache(ctx, &cfg); err != nil {
		return err
	}
	a.fills = a.newFills(cfg)
	ups, err := newUpstreams(cfg, a.log)
	if err != nil {
		return err
	}
	a.upstreams = ups
	for _, u := range ups {
		if u.Client.Sealed() {
			mirror.LogSealed(a.log, u.Name, true)
		}
	}
	if a.access, err = newAccess(cfg, a.upstreams, a.log); err != nil {
		return err
	}
	a.fleet = fleet.New(fleet.DefaultMaxNodes, fleet.DefaultMaxArrivals)
	if err := a.loadExpected(cfg); err != nil {
		return err
	}
	a.registerMetrics()
	a.admin = admin.New((*adminSource)(a), admin.Deps{Metrics: a.metrics, Log: a.log, Ops: a.evictor.Ops(), Scrub: a.scrub, Index: a.index, Fleet: a.fleet})
	if a.content, a.registry, err = a.newAPI(cfg); err != nil {
		return err
	}
	if cfg.TLS.Cert != "" {
		if a.certs, err = certfile.Load(cfg.TLS.Cert, cfg.TLS.Key, a.log); err != nil {
			return err
		}
	}
	return nil
}

// openCache puts the cache cap of cfg in effect (resolving a percentage),
// builds the scrub and the cache's upkeep, and reconciles the index with
// the store after a crash.
func (a *App) openCache(ctx context.Context, cfg *config.Config) error {
	a.evictor = a.newEvictor(*cfg)
	n, err := a.evictor.ApplyCap(a.capInput(*cfg))
	if err != nil {
		return err
	}
	cfg.Storage.MaxSize = n
	a.cfg.Store(cfg)
	a.scrub = a.newScrub(*cfg)
	// After a clean stop the index and the store agreed; after a crash (or
	// with a new or rebuilt index) every entry and file is checked.
	if _, local := a.store.(*disk.Store); local && (a.bolt == nil || !a.bolt.Clean) {
		return cache.Reconcile(ctx, a.store, a.index, a.log)
	}
	return nil
}

// newFills is the fill manager (the content service records its fills in
// the index).
func (a *App) newFills(cfg config.Config) *fill.Manager {
	return fill.New(a.store, fill.WithLogger(a.log), fill.WithTimeout(cfg.FillTimeout), fill.WithFreeSpace(a.store.Available),
		fill.WithMaxSize(cfg.Storage.MaxBlobSize))
}

// newAPI is the content service, with the rules in effect, and the
// registry API over it.
func (a *App) newAPI(cfg config.Config) (*mirror.Service, *registry.Server, error) {
	ruleSet, err := rules.Compile(cfg.Rules)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	pol, err := policy.Compile(cfg.Policy)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	m := metrics.New(a.metrics)
	content := mirror.New(a.store, a.index, a.fills, a.upstreams, append([]mirror.Option{
		mirror.WithRules(ruleSet), mirror.WithPolicy(pol), mirror.WithMetrics(m), mirror.WithLogger(a.log), mirror.WithFreshness(cfg.Freshness), mirror.WithNegativeTTL(cfg.NegativeTTL),
		mirror.WithPrefetch(cfg.Prefetch.Enabled, cfg.Prefetch.Parallel),
		mirror.WithBudgetReserve(cfg.BudgetReserve.Count, cfg.BudgetReserve.Percent),
		mirror.WithCommitted(a.evictor.Committed)}, clusterOptions(cfg, a.store, a.cluster)...)...)
	reg := registry.New(content,
		registry.WithAuthorizer(a.access), registry.WithMiddleware(a.access.Middleware),
		registry.WithMetrics(m), registry.WithLogger(a.log), registry.WithObserver(a.admin.Observe), registry.WithClientAddr(a.access.ClientAddr), registry.WithClientUser(a.access.User))
	return content, reg, nil
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
			Credentialed: u.Credentialed(),
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

// AdminHandler serves health, readiness, metrics, status, the cache API
// and the dashboard (unguarded: Serve puts the admin listener's guard in
// front of it).
func (a *App) AdminHandler() http.Handler { return a.admin.Handler() }

// Status is what /status answers and `regcache status` prints.
func (a *App) Status() admin.Status { return a.admin.Status() }

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

// newEvictor is eviction by cfg's limits over the opened store and index,
// with the cache commands' Ops: what the content service holds in memory
// is forgotten with what they delete.
func (a *App) newEvictor(cfg config.Config) *cache.Evictor {
	ec := cache.EvictorConfig{Log: a.log, Now: a.now, MaxSize: cfg.Storage.MaxSize, MaxAge: cfg.Storage.MaxAge,
		Rules: a.ruleSet, Down: func() map[string]bool { return a.upstreams.Down() }} // built before the upstreams
	if a.cluster != nil {
		ec.Cluster = a.cluster
	}
	return cache.NewEvictor(a.store, a.index, ec, cache.OpsConfig{
		Forget: func(ds ...digest.Digest) {
			if a.content != nil {
				a.content.Forget(ds...)
			}
		},
		ForgetTag: func(upstream, repo, tag string) {
			if a.content != nil {
				a.content.ForgetTag(upstream, repo, tag)
			}
		},
		Rule: a.ruleName, Missing: a.sealedMisses})
}
