// Package storage opens where the mirror keeps content and its index:
// local disk and bbolt, or S3 (with a local tier) and, with cluster.redis,
// the Redis index and this replica's membership of the cluster; and the
// sweep of S3 multipart uploads that killed replicas left.
package storage

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/blobstore/s3"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cacheindex/redisindex"
	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
)

// Store is a content store the mirror runs on: local disk, or S3.
type Store interface {
	blobstore.Store
	// Available is the free space fills pass through (the local disk).
	Available() (int64, error)
	// Readable is nil while stored content can be served; Writable while
	// new content can be stored (/readyz asks both).
	Readable(ctx context.Context) error
	Writable(ctx context.Context) error
}

// Storage is where content and the index live, opened.
type Storage struct {
	Store Store
	Index cacheindex.Backend
	// Cluster is this replica's membership (with cluster.redis); nil on
	// one node.
	Cluster *cluster.Cluster
	close   func()
}

// Close stops what Open started beside the store and the index (the
// upload sweep, the Redis client); call it after the index is closed.
func (st *Storage) Close() { st.close() }

// Open opens local disk and bbolt, or S3 (with its local tier) and,
// with cluster.redis, the Redis index and this replica's membership.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (st Storage, err error) {
	st = Storage{close: func() {}}
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
		st.Index = ix
		return st, nil
	}
	return st, st.joinCluster(ctx, cfg, log)
}

// openStore opens the local disk store, or S3 with its local tier and the
// sweep of stale multipart uploads (stopped by close).
func (st *Storage) openStore(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if cfg.Storage.S3.Bucket == "" {
		d, err := disk.New(cfg.Data)
		st.Store = d
		return err
	}
	sc := cfg.Storage.S3
	s, err := s3.New(ctx, s3.Config{Endpoint: sc.Endpoint, Bucket: sc.Bucket, Region: sc.Region, Prefix: sc.Prefix,
		AccessKey: sc.AccessKey, SecretKey: sc.SecretKey, PathStyle: sc.PathStyle}, filepath.Join(cfg.Data, "s3"),
		s3.WithLogger(log), s3.WithLocalTier(cfg.Storage.LocalCacheSize))
	if err != nil {
		return err
	}
	st.Store = s
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	swept := make(chan struct{})
	go func() { defer close(swept); sweepUploads(sweepCtx, s, log) }()
	st.close = func() { stopSweep(); <-swept }
	return nil
}

// joinCluster opens the Redis index and joins this replica to the
// cluster (membership, leases, the peers' reads of what this one stores).
func (st *Storage) joinCluster(ctx context.Context, cfg config.Config, log *slog.Logger) error {
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
	st.Index = ix
	store := st.Store
	st.Cluster = cluster.New(rdb, cfg.Cluster.Advertise, cfg.Cluster.Secret, cluster.WithLogger(log),
		cluster.WithStored(func(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error) {
			b, err := store.Open(ctx, d)
			if err != nil {
				return nil, 0, err
			}
			return b, b.Size(), nil
		}))
	if err := st.Cluster.Join(ctx); err != nil {
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

// staleUpload is the age past which an open multipart upload is taken
// for the leftover of a replica killed mid-fill (fills time out long before).
const staleUpload = 24 * time.Hour

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
