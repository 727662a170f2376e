// Package redisindex is a cacheindex.Backend in Redis (or Valkey), shared
// by the replicas of a cluster: tags, manifests, blob sizes and last
// access, holdings per (upstream, repository) and origins, under one key
// prefix.
//
// Layout (prefix "regcache:" by default):
//
//	tags       hash  upstream \x00 repo \x00 tag → TagEntry (JSON)
//	manifests  hash  digest → ManifestEntry (JSON)
//	blobs      hash  digest → {size, created} (JSON)
//	access     zset  digest, score = last access (Unix ms)
//	holds      set   upstream \x00 repo \x00 digest
//	origins    set   upstream \x00 digest
//
// Access times are kept in memory and written in batches with ZADD XX GT:
// an access never moves a time back and never brings back a blob another
// replica deleted meanwhile.
package redisindex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/cacheindex"
)

// Index is the Redis-backed cache index. It is safe for concurrent use.
type Index struct {
	c      redis.UniversalClient
	prefix string
	log    *slog.Logger
	now    func() time.Time
	// timeout bounds each call: the Backend interface takes no context.
	timeout time.Duration
	// tolerant turns Redis errors into "not recorded": reads find nothing,
	// writes are dropped (logged), so replicas keep serving from S3 and
	// upstream while Redis is down.
	tolerant bool
	warnMu   sync.Mutex
	warned   time.Time

	touched cacheindex.Touches
}

var _ cacheindex.Backend = (*Index)(nil)

// Option configures an Index.
type Option func(*Index)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(ix *Index) { ix.log = l } }

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(ix *Index) { ix.now = now } }

// WithTolerance makes Redis errors count as absent entries and dropped
// writes (logged at most every 10 seconds) instead of failing requests.
func WithTolerance() Option { return func(ix *Index) { ix.tolerant = true } }

// soft is err, or nil (logged) when the index tolerates Redis errors.
func (ix *Index) soft(err error) error {
	if !ix.tolerant || err == nil {
		return err
	}
	ix.warnMu.Lock()
	if time.Since(ix.warned) > 10*time.Second {
		ix.warned = time.Now()
		ix.log.Warn("Redis index unreachable; serving without it (entries read as absent, writes dropped)", slog.Any("error", err))
	}
	ix.warnMu.Unlock()
	return nil
}

// WithPrefix sets the key prefix (default "regcache:"), so several caches
// can share one Redis database.
func WithPrefix(p string) Option { return func(ix *Index) { ix.prefix = p } }

// ParseURL reads cluster.redis: redis://[user:password@]host:port/db, or
// rediss:// for TLS.
func ParseURL(raw string) (*redis.Options, error) {
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("cluster.redis: %w (want redis://[:password@]host:port/db or rediss:// for TLS)", err)
	}
	// An unreachable Redis must not hold every request for the client's
	// default 5 s: the index and leases fall back quickly instead. The
	// URL's dial_timeout, read_timeout and write_timeout still win.
	for _, d := range []*time.Duration{&o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout} {
		if *d == 0 {
			*d = time.Second
		}
	}
	return o, nil
}

// New uses the client (which the cluster shares for membership and
// leases), checks Redis answers, and flushes access times every
// flushEvery (and on Close). Close does not close the client.
func New(ctx context.Context, c redis.UniversalClient, flushEvery time.Duration, opts ...Option) (*Index, error) {
	ix := &Index{c: c, prefix: "regcache:", log: slog.New(slog.DiscardHandler), now: time.Now, timeout: 10 * time.Second}
	for _, o := range opts {
		o(ix)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("cluster.redis: %w", err)
	}
	ix.touched.Start(flushEvery, ix.Flush, func(err error) { ix.log.Warn("flush access times", slog.Any("error", err)) })
	return ix, nil
}

func (ix *Index) key(name string) string { return ix.prefix + name }

func (ix *Index) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ix.timeout)
}

func tagField(upstream, repo, tag string) string { return upstream + "\x00" + repo + "\x00" + tag }

func getJSON[T any](ix *Index, hash, field string) (T, bool, error) {
	var v T
	ctx, cancel := ix.ctx()
	defer cancel()
	raw, err := ix.c.HGet(ctx, ix.key(hash), field).Bytes()
	if errors.Is(err, redis.Nil) {
		return v, false, nil
	}
	if err != nil {
		return v, false, ix.soft(fmt.Errorf("redis index: %w", err))
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("redis index %s %q: %w", hash, field, err)
	}
	return v, true, nil
}

func (ix *Index) setJSON(hash, field string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := ix.ctx()
	defer cancel()
	if err := ix.c.HSet(ctx, ix.key(hash), field, raw).Err(); err != nil {
		return ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return nil
}

// Tag implements cacheindex.Backend.
func (ix *Index) Tag(upstream, repo, tag string) (cacheindex.TagEntry, bool, error) {
	return getJSON[cacheindex.TagEntry](ix, "tags", tagField(upstream, repo, tag))
}

// PutTag implements cacheindex.Backend.
func (ix *Index) PutTag(upstream, repo, tag string, e cacheindex.TagEntry) error {
	return ix.setJSON("tags", tagField(upstream, repo, tag), e)
}

// DeleteTag implements cacheindex.Backend.
func (ix *Index) DeleteTag(upstream, repo, tag string) error {
	ctx, cancel := ix.ctx()
	defer cancel()
	if err := ix.c.HDel(ctx, ix.key("tags"), tagField(upstream, repo, tag)).Err(); err != nil {
		return ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return nil
}

// scan calls fn for every field of a hash, in batches.
func (ix *Index) scan(hash string, fn func(field, value string) error) error {
	var cursor uint64
	for {
		ctx, cancel := ix.ctx()
		kv, next, err := ix.c.HScan(ctx, ix.key(hash), cursor, "", 1000).Result()
		cancel()
		if err != nil {
			return ix.soft(fmt.Errorf("redis index: %w", err))
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if err := fn(kv[i], kv[i+1]); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// Tags implements cacheindex.Backend.
func (ix *Index) Tags(fn func(upstream, repo, tag string, e cacheindex.TagEntry) error) error {
	return ix.scan("tags", func(field, value string) error {
		var e cacheindex.TagEntry
		if err := json.Unmarshal([]byte(value), &e); err != nil {
			return fmt.Errorf("redis index tag %q: %w", field, err)
		}
		parts := strings.SplitN(field, "\x00", 3)
		if len(parts) != 3 {
			return nil
		}
		return fn(parts[0], parts[1], parts[2], e)
	})
}

// Manifest implements cacheindex.Backend.
func (ix *Index) Manifest(d digest.Digest) (cacheindex.ManifestEntry, bool, error) {
	return getJSON[cacheindex.ManifestEntry](ix, "manifests", d.String())
}

// Manifests implements cacheindex.Backend. A manifest's last access is
// its score in the access set (Touch), as a blob's is; a failed batch is
// an error even on a tolerant index (an eviction plan built on part of
// the manifests would take layers a kept image references).
func (ix *Index) Manifests(fn func(digest.Digest, cacheindex.ManifestEntry) error) error {
	var cursor uint64
	for {
		ctx, cancel := ix.ctx()
		kv, next, err := ix.c.HScan(ctx, ix.key("manifests"), cursor, "", 1000).Result()
		var scores []float64
		if err == nil && len(kv) > 0 {
			names := make([]string, 0, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				names = append(names, kv[i])
			}
			scores, err = ix.c.ZMScore(ctx, ix.key("access"), names...).Result()
		}
		cancel()
		if err != nil {
			return fmt.Errorf("redis index: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			var e cacheindex.ManifestEntry
			if err := json.Unmarshal([]byte(kv[i+1]), &e); err != nil {
				return fmt.Errorf("redis index manifest %q: %w", kv[i], err)
			}
			e.LastAccess = fromScore(scores[i/2], e.LastAccess)
			if err := fn(digest.Digest(kv[i]), e); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// PutManifest implements cacheindex.Backend: the entry and the holdings
// in one transaction.
func (ix *Index) PutManifest(upstream, repo string, d digest.Digest, e cacheindex.ManifestEntry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	members := []any{holdMember(upstream, repo, d)}
	for _, ref := range e.Refs {
		members = append(members, holdMember(upstream, repo, ref))
	}
	ctx, cancel := ix.ctx()
	defer cancel()
	_, err = ix.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, ix.key("manifests"), d.String(), raw)
		p.SAdd(ctx, ix.key("holds"), members...)
		// A manifest's last access is kept as a blob's is (Touch, Flush):
		// an image's last use is its manifests', or a layer it shares
		// with a newer image would make it look as recent.
		p.ZAddArgs(ctx, ix.key("access"), redis.ZAddArgs{NX: true, Members: []redis.Z{{Score: float64(ix.now().UnixMilli()), Member: d.String()}}})
		return nil
	})
	if err != nil {
		return ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return nil
}

// PutManifestEntry implements cacheindex.Backend.
func (ix *Index) PutManifestEntry(d digest.Digest, e cacheindex.ManifestEntry) error {
	return ix.setJSON("manifests", d.String(), e)
}

func holdMember(upstream, repo string, d digest.Digest) string {
	return upstream + "\x00" + repo + "\x00" + d.String()
}

func (ix *Index) isMember(set, member string) (bool, error) {
	ctx, cancel := ix.ctx()
	defer cancel()
	ok, err := ix.c.SIsMember(ctx, ix.key(set), member).Result()
	if err != nil {
		return false, ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return ok, nil
}

func (ix *Index) addMember(set, member string) error {
	ctx, cancel := ix.ctx()
	defer cancel()
	if err := ix.c.SAdd(ctx, ix.key(set), member).Err(); err != nil {
		return ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return nil
}

// Holds implements cacheindex.Backend.
func (ix *Index) Holds(upstream, repo string, d digest.Digest) (bool, error) {
	return ix.isMember("holds", holdMember(upstream, repo, d))
}

// PutHolds implements cacheindex.Backend.
func (ix *Index) PutHolds(upstream, repo string, d digest.Digest) error {
	return ix.addMember("holds", holdMember(upstream, repo, d))
}

// PutOrigin implements cacheindex.Backend.
func (ix *Index) PutOrigin(upstream string, d digest.Digest) error {
	return ix.addMember("origins", upstream+"\x00"+d.String())
}

// HasOrigin implements cacheindex.Backend.
func (ix *Index) HasOrigin(upstream string, d digest.Digest) (bool, error) {
	return ix.isMember("origins", upstream+"\x00"+d.String())
}

// blobRecord is a blob's hash value; the last access lives in the zset.
type blobRecord struct {
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Blob implements cacheindex.Backend.
func (ix *Index) Blob(d digest.Digest) (cacheindex.BlobEntry, bool, error) {
	r, ok, err := getJSON[blobRecord](ix, "blobs", d.String())
	if err != nil || !ok {
		return cacheindex.BlobEntry{}, ok, err
	}
	ctx, cancel := ix.ctx()
	defer cancel()
	score, err := ix.c.ZScore(ctx, ix.key("access"), d.String()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return cacheindex.BlobEntry{}, false, ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return cacheindex.BlobEntry{Size: r.Size, Created: r.Created, LastAccess: fromScore(score, r.Created)}, true, nil
}

func fromScore(score float64, fallback time.Time) time.Time {
	if score == 0 {
		return fallback
	}
	return time.UnixMilli(int64(score)).UTC()
}

// PutBlob implements cacheindex.Backend.
func (ix *Index) PutBlob(d digest.Digest, size int64) error {
	now := ix.now()
	raw, err := json.Marshal(blobRecord{Size: size, Created: now})
	if err != nil {
		return err
	}
	ctx, cancel := ix.ctx()
	defer cancel()
	_, err = ix.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, ix.key("blobs"), d.String(), raw)
		p.ZAdd(ctx, ix.key("access"), redis.Z{Score: float64(now.UnixMilli()), Member: d.String()})
		return nil
	})
	if err != nil {
		return ix.soft(fmt.Errorf("redis index: %w", err))
	}
	return nil
}

// DeleteBlob implements cacheindex.Backend. Its failure is returned even
// when the index tolerates Redis errors: an eviction or a drop of a damaged
// file that believed the entry gone would go on as if the index agreed.
func (ix *Index) DeleteBlob(d digest.Digest) error {
	ctx, cancel := ix.ctx()
	defer cancel()
	_, err := ix.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, ix.key("blobs"), d.String())
		p.HDel(ctx, ix.key("manifests"), d.String())
		p.ZRem(ctx, ix.key("access"), d.String())
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis index: %w", err)
	}
	return nil
}

// Blobs implements cacheindex.Backend, a batch of entries at a time. A
// scan that fails returns its error even when the index tolerates Redis
// errors: an eviction plan or a count built on part of the entries would
// be wrong, not empty. (HSCAN may return an entry twice; PlanEviction and
// the counts it feeds take each digest once.)
func (ix *Index) Blobs(fn func(digest.Digest, cacheindex.BlobEntry) error) error {
	var cursor uint64
	for {
		ctx, cancel := ix.ctx()
		kv, next, err := ix.c.HScan(ctx, ix.key("blobs"), cursor, "", 1000).Result()
		if err != nil {
			cancel()
			return fmt.Errorf("redis index: %w", err)
		}
		var names []string
		for i := 0; i+1 < len(kv); i += 2 {
			names = append(names, kv[i])
		}
		var scores []float64
		if len(names) > 0 {
			if scores, err = ix.c.ZMScore(ctx, ix.key("access"), names...).Result(); err != nil {
				cancel()
				return fmt.Errorf("redis index: %w", err)
			}
		}
		cancel()
		for i := 0; i+1 < len(kv); i += 2 {
			var r blobRecord
			if err := json.Unmarshal([]byte(kv[i+1]), &r); err != nil {
				return fmt.Errorf("redis index blob %q: %w", kv[i], err)
			}
			e := cacheindex.BlobEntry{Size: r.Size, Created: r.Created, LastAccess: fromScore(scores[i/2], r.Created)}
			if err := fn(digest.Digest(kv[i]), e); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// Touch implements cacheindex.Backend.
func (ix *Index) Touch(d digest.Digest) { ix.touched.Add(ix.now(), d) }

// TouchAll implements cacheindex.Backend.
func (ix *Index) TouchAll(ds []digest.Digest) { ix.touched.Add(ix.now(), ds...) }

// Flush writes pending access times in one pipeline. On failure they are
// kept for the next flush.
func (ix *Index) Flush() error {
	batch := ix.touched.Take()
	if len(batch) == 0 {
		return nil
	}
	zs := make([]redis.Z, 0, len(batch))
	for d, at := range batch {
		zs = append(zs, redis.Z{Score: float64(at.UnixMilli()), Member: d.String()})
	}
	ctx, cancel := ix.ctx()
	defer cancel()
	// XX: only blobs and manifests still indexed; GT: never back.
	if err := ix.c.ZAddArgs(ctx, ix.key("access"), redis.ZAddArgs{XX: true, GT: true, Members: zs}).Err(); err != nil {
		ix.touched.Keep(batch)
		return fmt.Errorf("redis index: flush access times: %w", err)
	}
	return nil
}

// EvictionPlan implements cacheindex.Backend.
func (ix *Index) EvictionPlan(p cacheindex.EvictPolicy, now time.Time) (cacheindex.Plan, error) {
	return cacheindex.PlanEviction(ix, p, now)
}

// Reachable implements cacheindex.Backend.
func (ix *Index) Reachable(keep func(upstream string, e cacheindex.TagEntry) bool) (map[digest.Digest]bool, error) {
	return cacheindex.ReachableFrom(ix, keep)
}

// Close flushes pending access times. The client stays open.
func (ix *Index) Close() error {
	ix.touched.Stop()
	return ix.Flush()
}
