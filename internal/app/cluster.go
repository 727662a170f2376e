package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/blobstore/s3"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cacheindex/redisindex"
	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/mirror"
)

// appStore is a content store the app runs on: local disk, or S3.
type appStore interface {
	blobstore.Store
	// Available is the free space fills pass through (the local disk).
	Available() (int64, error)
	// Readable is nil while stored content can be served; Writable while
	// new content can be stored (/readyz asks both).
	Readable(ctx context.Context) error
	Writable(ctx context.Context) error
}

// storage is where content and the index live.
type storage struct {
	store appStore
	index cacheindex.Backend

	cluster *cluster.Cluster
	close   func() // after the index is closed
}

// openStorage opens local disk and bbolt, or S3 (with its local tier) and,
// with cluster.redis, the Redis index and this replica's membership.
func openStorage(ctx context.Context, cfg config.Config, log *slog.Logger) (st storage, err error) {
	st = storage{close: func() {}}
	defer func() {
		if err != nil {
			st.close() // the upload sweep stops
		}
	}()
	if err := st.openStore(ctx, cfg, log); err != nil {
		return st, err
	}
	if cfg.Cluster.Redis == "" {
		ix, err := cacheindex.Open(filepath.Join(cfg.Data, "index.db"), 10*time.Second, cacheindex.WithLogger(log))
		if err != nil {
			return st, err
		}
		st.index = ix
		return st, nil
	}
	return st, st.joinCluster(ctx, cfg, log)
}

// openStore opens the local disk store, or S3 with its local tier and the
// sweep of stale multipart uploads (stopped by close).
func (st *storage) openStore(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.Storage.S3.Bucket == "" {
		d, err := disk.New(cfg.Data)
		st.store = d
		return err
	}
	sc := cfg.Storage.S3
	s, err := s3.New(ctx, s3.Config{Endpoint: sc.Endpoint, Bucket: sc.Bucket, Region: sc.Region, Prefix: sc.Prefix,
		AccessKey: sc.AccessKey, SecretKey: sc.SecretKey, PathStyle: sc.PathStyle}, filepath.Join(cfg.Data, "s3"),
		s3.WithLogger(log), s3.WithLocalTier(cfg.Storage.LocalCacheSize))
	if err != nil {
		return err
	}
	st.store = s
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	swept := make(chan struct{})
	go func() { defer close(swept); sweepUploads(sweepCtx, s, log) }()
	st.close = func() { stopSweep(); <-swept }
	return nil
}

// joinCluster opens the Redis index and joins this replica to the
// cluster (membership, leases, the peers' reads of what this one stores).
func (st *storage) joinCluster(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	opts, err := redisindex.ParseURL(cfg.Cluster.Redis)
	if err != nil {
		return err
	}
	redis.SetLogger(&redisLog{log: log}) // process-wide: the library has one logger
	rdb := redis.NewClient(opts)
	ix, err := redisindex.New(ctx, rdb, 10*time.Second, redisindex.WithLogger(log), redisindex.WithTolerance())
	if err != nil {
		rdb.Close()
		return err
	}
	st.index = ix
	store := st.store
	st.cluster = cluster.New(rdb, cfg.Cluster.Advertise, cfg.Cluster.Secret, cluster.WithLogger(log),
		cluster.WithStored(func(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
			b, err := store.Open(ctx, d)
			if err != nil {
				return nil, 0, err
			}
			return b, b.Size(), nil
		}))
	if err := st.cluster.Join(ctx); err != nil {
		ix.Close()
		rdb.Close()
		return err
	}
	stopSweep := st.close
	st.close = func() { stopSweep(); rdb.Close() }
	return nil
}

// sweepUploads aborts the multipart uploads of replicas killed mid-fill,
// at start and every staleSweepEvery until ctx is done (an S3 lifecycle
// rule, AbortIncompleteMultipartUpload, is the backstop).
func sweepUploads(ctx context.Context, s *s3.Store, log *slog.Logger) {
	t := time.NewTicker(staleSweepEvery)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		if n, err := s.AbortStale(sctx, staleUpload); err != nil && ctx.Err() == nil {
			log.Warn("abort stale S3 multipart uploads", slog.Any("error", err))
		} else if n > 0 {
			log.Info("aborted stale S3 multipart uploads", slog.Int("uploads", n))
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// staleSweepEvery is how often open multipart uploads are checked for
// leftovers.
const staleSweepEvery = time.Hour

// clusterOptions make the content service fetch once across the cluster,
// and send clients to S3 for hits with storage.s3.redirect.
func clusterOptions(cfg config.Config, store appStore, cl *cluster.Cluster) []mirror.Option {
	var opts []mirror.Option
	if s, ok := store.(*s3.Store); ok && cfg.Storage.S3.Redirect {
		opts = append(opts, mirror.WithRedirect(func(ctx context.Context, d digest.Digest) (string, error) {
			return s.RedirectURL(ctx, d, redirectTTL)
		}))
	}
	if cl == nil {
		return opts
	}
	return append(opts,
		mirror.WithBlobSource(mirror.BlobSource(cl.Source)),
		mirror.WithFlightLock(func(ctx context.Context, key string, fn func()) { cl.Once(ctx, "flight:"+key, time.Minute, fn) }))
}

// staleUpload is the age past which an open multipart upload is taken
// for the leftover of a replica killed mid-fill (fills time out long before).
const staleUpload = 24 * time.Hour

// redirectTTL is how long a presigned redirect of a blob hit is valid: long
// enough to start the download, short enough not to be shared.
const redirectTTL = 5 * time.Minute

// withPeers mounts the cluster's internal endpoint beside the registry API.
func (a *App) withPeers(api http.Handler) http.Handler {
	if a.cluster == nil {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle(cluster.PeerPath, a.cluster.Handler(a.content, func(d digest.Digest) int64 {
		var most int64
		for _, p := range a.fills.Progress() {
			if p.Digest == d {
				most = max(most, p.Written)
			}
		}
		return most
	}))
	mux.Handle("/", api)
	return mux
}

// redisLog carries the Redis client library's own lines (a failed dial of
// its pool, about five a second while Redis is down) into the product's
// log: as JSON, at most one every redisLogEvery, with how many were left
// out since the last.
type redisLog struct {
	log     *slog.Logger
	mu      sync.Mutex
	last    time.Time
	dropped int
}

// redisLogEvery bounds how often the Redis client's lines are logged.
const redisLogEvery = 10 * time.Second

func (r *redisLog) Printf(_ context.Context, format string, v ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.last) >= redisLogEvery {
		r.log.Warn("redis client: "+strings.TrimSpace(fmt.Sprintf(format, v...)), slog.Int("left_out", r.dropped))
		r.last, r.dropped = now, 0
		return
	}
	r.dropped++
}

// clusterMetrics are this replica's view of the cluster.
func clusterMetrics(cl *cluster.Cluster) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_cluster_replicas_live",
			Help: "Replicas this one takes as live (itself included): heartbeating and not suspected."},
			func() float64 { return float64(cl.View().Live) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_cluster_membership_trusted",
			Help: "1 when the live set was read from Redis at the last heartbeat; 0 while Redis is away (the last set read is kept)."},
			func() float64 {
				if cl.View().Trusted {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_cluster_leases_held",
			Help: "Redis leases held by this replica's fills and locks."},
			func() float64 { return float64(cl.View().Leases) }),
	}
}
