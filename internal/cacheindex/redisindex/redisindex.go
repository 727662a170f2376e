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
	// timeout bounds each round trip, within the caller's ctx.
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

// soft is err, or nil (logged) when the index tolerates Redis errors. A
// caller's ctx that ended is not Redis being away: its error stays.
func (ix *Index) soft(ctx context.Context, err error) error {
	if !ix.tolerant || err == nil {
		return err
	}
	if ctx.Err() != nil {
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

// do runs one round trip, fn, under the caller's ctx bounded by the
// index's per-call timeout. go-redis heeds a ctx while it waits for a
// connection, but not while it waits for a reply (that read ends at the
// client's read timeout): so do returns as soon as ctx ends or the timeout
// passes, with that error, and the round trip finishes or times out on its
// own, giving its connection back to the pool. do returns fn's error when
// fn ended; else fn may still run, and its results must not be read.
func (ix *Index) do(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	call, cancel := context.WithTimeout(ctx, ix.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(call) }()
	select {
	case err := <-done:
		return err
	case <-call.Done():
		select {
		case err := <-done: // it ended too: its answer stands
			return err
		default:
			return call.Err()
		}
	}
}

// wrapped is err from Redis, named; nil stays nil.
func wrapped(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("redis index: %w", err)
}

func tagField(upstream, repo, tag string) string { return upstream + "\x00" + repo + "\x00" + tag }

func getJSON[T any](ctx context.Context, ix *Index, hash, field string) (T, bool, error) {
	var v T
	var raw []byte
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		raw, err = ix.c.HGet(ctx, ix.key(hash), field).Bytes()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return v, false, nil
	}
	if err != nil {
		return v, false, ix.soft(ctx, wrapped(err))
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, fmt.Errorf("redis index %s %q: %w", hash, field, err)
	}
	return v, true, nil
}

func (ix *Index) setJSON(ctx context.Context, hash, field string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return ix.soft(ctx, wrapped(ix.do(ctx, func(ctx context.Context) error {
		return ix.c.HSet(ctx, ix.key(hash), field, raw).Err()
	})))
}

// Tag implements cacheindex.Backend.
func (ix *Index) Tag(ctx context.Context, upstream, repo, tag string) (cacheindex.TagEntry, bool, error) {
	return getJSON[cacheindex.TagEntry](ctx, ix, "tags", tagField(upstream, repo, tag))
}

// PutTag implements cacheindex.Backend.
func (ix *Index) PutTag(ctx context.Context, upstream, repo, tag string, e cacheindex.TagEntry) error {
	return ix.setJSON(ctx, "tags", tagField(upstream, repo, tag), e)
}

// DeleteTag implements cacheindex.Backend.
func (ix *Index) DeleteTag(ctx context.Context, upstream, repo, tag string) error {
	return ix.soft(ctx, wrapped(ix.do(ctx, func(ctx context.Context) error {
		return ix.c.HDel(ctx, ix.key("tags"), tagField(upstream, repo, tag)).Err()
	})))
}

// scan calls fn for every field of a hash, in batches.
func (ix *Index) scan(ctx context.Context, hash string, fn func(field, value string) error) error {
	var cursor uint64
	for {
		var kv []string
		var next uint64
		err := ix.do(ctx, func(ctx context.Context) error {
			var err error
			kv, next, err = ix.c.HScan(ctx, ix.key(hash), cursor, "", 1000).Result()
			return err
		})
		if err != nil {
			return ix.soft(ctx, wrapped(err))
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
func (ix *Index) Tags(ctx context.Context, fn func(upstream, repo, tag string, e cacheindex.TagEntry) error) error {
	return ix.scan(ctx, "tags", func(field, value string) error {
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
func (ix *Index) Manifest(ctx context.Context, d digest.Digest) (cacheindex.ManifestEntry, bool, error) {
	return getJSON[cacheindex.ManifestEntry](ctx, ix, "manifests", d.String())
}

// Manifests implements cacheindex.Backend. A manifest's last access is
// its score in the access set (Touch), as a blob's is; a failed batch is
// an error even on a tolerant index (an eviction plan built on part of
// the manifests would take layers a kept image references).
func (ix *Index) Manifests(ctx context.Context, fn func(digest.Digest, cacheindex.ManifestEntry) error) error {
	var cursor uint64
	for {
		kv, scores, next, err := ix.scanScored(ctx, "manifests", cursor)
		if err != nil {
			return err
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
func (ix *Index) PutManifest(ctx context.Context, upstream, repo string, d digest.Digest, e cacheindex.ManifestEntry) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	members := []any{holdMember(upstream, repo, d)}
	for _, ref := range e.Refs {
		members = append(members, holdMember(upstream, repo, ref))
	}
	return ix.soft(ctx, wrapped(ix.pipeline(ctx, func(ctx context.Context, p redis.Pipeliner) {
		p.HSet(ctx, ix.key("manifests"), d.String(), raw)
		p.SAdd(ctx, ix.key("holds"), members...)
		// A manifest's last access is kept as a blob's is (Touch, Flush):
		// an image's last use is its manifests', or a layer it shares
		// with a newer image would make it look as recent.
		p.ZAddArgs(ctx, ix.key("access"), redis.ZAddArgs{NX: true, Members: []redis.Z{{Score: float64(ix.now().UnixMilli()), Member: d.String()}}})
	})))
}

// pipeline runs the commands fn queues in one transaction, as do runs one
// round trip.
func (ix *Index) pipeline(ctx context.Context, fn func(ctx context.Context, p redis.Pipeliner)) error {
	return ix.do(ctx, func(ctx context.Context) error {
		_, err := ix.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			fn(ctx, p)
			return nil
		})
		return err
	})
}

// PutManifestEntry implements cacheindex.Backend.
func (ix *Index) PutManifestEntry(ctx context.Context, d digest.Digest, e cacheindex.ManifestEntry) error {
	return ix.setJSON(ctx, "manifests", d.String(), e)
}

func holdMember(upstream, repo string, d digest.Digest) string {
	return upstream + "\x00" + repo + "\x00" + d.String()
}

func (ix *Index) isMember(ctx context.Context, set, member string) (bool, error) {
	var ok bool
	err := ix.do(ctx, func(ctx context.Context) error {
		var err error
		ok, err = ix.c.SIsMember(ctx, ix.key(set), member).Result()
		return err
	})
	if err != nil {
		return false, ix.soft(ctx, wrapped(err))
	}
	return ok, nil
}

func (ix *Index) addMember(ctx context.Context, set, member string) error {
	return ix.soft(ctx, wrapped(ix.do(ctx, func(ctx context.Context) error {
		return ix.c.SAdd(ctx, ix.key(set), member).Err()
	})))
}

// Holds implements cacheindex.Backend.
func (ix *Index) Holds(ctx context.Context, upstream, repo string, d digest.Digest) (bool, error) {
	return ix.isMember(ctx, "holds", holdMember(upstream, repo, d))
}

// PutHolds implements cacheindex.Backend.
func (ix *Index) PutHolds(ctx context.Context, upstream, repo string, d digest.Digest) error {
	return ix.addMember(ctx, "holds", holdMember(upstream, repo, d))
}

// PutOrigin implements cacheindex.Backend.
func (ix *Index) PutOrigin(ctx context.Context, upstream string, d digest.Digest) error {
	return ix.addMember(ctx, "origins", upstream+"\x00"+d.String())
}

// HasOrigin implements cacheindex.Backend.
func (ix *Index) HasOrigin(ctx context.Context, upstream string, d digest.Digest) (bool, error) {
	return ix.isMember(ctx, "origins", upstream+"\x00"+d.String())
}

// blobRecord is a blob's hash value; the last access lives in the zset.
type blobRecord struct {
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Blob implements cacheindex.Backend.
func (ix *Index) Blob(ctx context.Context, d digest.Digest) (cacheindex.BlobEntry, bool, error) {
	r, ok, err := getJSON[blobRecord](ctx, ix, "blobs", d.String())
	if err != nil || !ok {
		return cacheindex.BlobEntry{}, ok, err
	}
	var score float64
	err = ix.do(ctx, func(ctx context.Context) error {
		var err error
		score, err = ix.c.ZScore(ctx, ix.key("access"), d.String()).Result()
		return err
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return cacheindex.BlobEntry{}, false, ix.soft(ctx, wrapped(err))
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
func (ix *Index) PutBlob(ctx context.Context, d digest.Digest, size int64) error {
	now := ix.now()
	raw, err := json.Marshal(blobRecord{Size: size, Created: now})
	if err != nil {
		return err
	}
	return ix.soft(ctx, wrapped(ix.pipeline(ctx, func(ctx context.Context, p redis.Pipeliner) {
		p.HSet(ctx, ix.key("blobs"), d.String(), raw)
		p.ZAdd(ctx, ix.key("access"), redis.Z{Score: float64(now.UnixMilli()), Member: d.String()})
	})))
}

// DeleteBlob implements cacheindex.Backend. Its failure is returned even
// when the index tolerates Redis errors: an eviction or a drop of a damaged
// file that believed the entry gone would go on as if the index agreed.
func (ix *Index) DeleteBlob(ctx context.Context, d digest.Digest) error {
	return wrapped(ix.pipeline(ctx, func(ctx context.Context, p redis.Pipeliner) {
		p.HDel(ctx, ix.key("blobs"), d.String())
		p.HDel(ctx, ix.key("manifests"), d.String())
		p.ZRem(ctx, ix.key("access"), d.String())
	}))
}

// Blobs implements cacheindex.Backend, a batch of entries at a time. A
// scan that fails returns its error even when the index tolerates Redis
// errors: an eviction plan or a count built on part of the entries would
// be wrong, not empty. (HSCAN may return an entry twice; PlanEviction and
// the counts it feeds take each digest once.)
func (ix *Index) Blobs(ctx context.Context, fn func(digest.Digest, cacheindex.BlobEntry) error) error {
	var cursor uint64
	for {
		kv, scores, next, err := ix.scanScored(ctx, "blobs", cursor)
		if err != nil {
			return err
		}
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

// scanScored is one batch of a hash's scan from cursor, field and value
// after field and value, with each field's last access (its score in the
// access set), and the next cursor. Its error is returned even on a
// tolerant index: a scan's caller builds on the whole.
func (ix *Index) scanScored(ctx context.Context, hash string, cursor uint64) ([]string, []float64, uint64, error) {
	type batch struct {
		kv     []string
		scores []float64
		next   uint64
	}
	var got batch
	err := ix.do(ctx, func(ctx context.Context) error {
		var b batch
		var err error
		if b.kv, b.next, err = ix.c.HScan(ctx, ix.key(hash), cursor, "", 1000).Result(); err != nil {
			return err
		}
		if len(b.kv) > 0 {
			names := make([]string, 0, len(b.kv)/2)
			for i := 0; i+1 < len(b.kv); i += 2 {
				names = append(names, b.kv[i])
			}
			if b.scores, err = ix.c.ZMScore(ctx, ix.key("access"), names...).Result(); err != nil {
				return err
			}
		}
		got = b
		return nil
	})
	if err != nil {
		return nil, nil, 0, wrapped(err)
	}
	return got.kv, got.scores, got.next, nil
}

// Touch implements cacheindex.Backend: in memory, no I/O, so no ctx.
func (ix *Index) Touch(d digest.Digest) { ix.touched.Add(ix.now(), d) }

// TouchAll implements cacheindex.Backend, as Touch.
func (ix *Index) TouchAll(ds []digest.Digest) { ix.touched.Add(ix.now(), ds...) }

// Flush writes pending access times in one pipeline. On failure they are
// kept for the next flush.
func (ix *Index) Flush(ctx context.Context) error {
	batch := ix.touched.Take()
	if len(batch) == 0 {
		return nil
	}
	zs := make([]redis.Z, 0, len(batch))
	for d, at := range batch {
		zs = append(zs, redis.Z{Score: float64(at.UnixMilli()), Member: d.String()})
	}
	// XX: only blobs and manifests still indexed; GT: never back.
	err := ix.do(ctx, func(ctx context.Context) error {
		return ix.c.ZAddArgs(ctx, ix.key("access"), redis.ZAddArgs{XX: true, GT: true, Members: zs}).Err()
	})
	if err != nil {
		ix.touched.Keep(batch)
		return fmt.Errorf("redis index: flush access times: %w", err)
	}
	return nil
}

// EvictionPlan implements cacheindex.Backend.
func (ix *Index) EvictionPlan(ctx context.Context, p cacheindex.EvictPolicy, now time.Time) (cacheindex.Plan, error) {
	return cacheindex.PlanEviction(ctx, ix, p, now)
}

// Reachable implements cacheindex.Backend.
func (ix *Index) Reachable(ctx context.Context, keep func(upstream string, e cacheindex.TagEntry) bool) (map[digest.Digest]bool, error) {
	return cacheindex.ReachableFrom(ctx, ix, keep)
}

// Close flushes pending access times, bounded by the per-call timeout:
// it runs at shutdown, when no request is left to give a ctx. The client
// stays open.
func (ix *Index) Close() error {
	ix.touched.Stop()
	return ix.Flush(context.Background())
}
