package cluster

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Scripts that change a lease only while this replica holds it.
var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
	// takeScript replaces a holder this replica found unreachable.
	takeScript = redis.NewScript(`local v = redis.call("GET", KEYS[1])
if v == false or v == ARGV[2] then redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[3]) return 1 else return 0 end`)
)

// Holder is the replica holding name's lease, "" if none (or Redis is
// unreachable).
func (c *Cluster) Holder(ctx context.Context, name string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := c.rdb.Get(ctx, c.key("lease:"+name)).Result()
	if err != nil {
		return ""
	}
	return v
}

// Acquire takes name's lease for this replica, or over from stale (a holder
// found unreachable; "" for none), and keeps renewing it until ctx is done,
// then releases it. It reports whether this replica holds the lease; false
// with Redis unreachable (the caller goes on alone).
func (c *Cluster) Acquire(ctx context.Context, name, stale string) bool {
	k := c.key("lease:" + name)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	var ok bool
	var err error
	if stale == "" {
		ok, err = c.rdb.SetNX(rctx, k, c.self, c.leaseTTL).Result()
	} else {
		var n int64
		n, err = takeScript.Run(rctx, c.rdb, []string{k}, c.self, stale, c.leaseTTL.Milliseconds()).Int64()
		ok = n == 1
	}
	cancel()
	if err != nil || !ok {
		if err != nil && !errors.Is(err, redis.Nil) {
			c.log.Warn("cluster: lease not taken; fetching anyway", slog.String("lease", name), slog.Any("error", err))
		}
		return false
	}
	go c.renew(ctx, k)
	return true
}

// renew extends the lease every third of its TTL while ctx lasts.
func (c *Cluster) renew(ctx context.Context, k string) {
	t := time.NewTicker(c.leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			releaseScript.Run(rctx, c.rdb, []string{k}, c.self)
			cancel()
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := renewScript.Run(rctx, c.rdb, []string{k}, c.self, c.leaseTTL.Milliseconds()).Int64()
			cancel()
			if err == nil && n == 0 {
				c.log.Warn("cluster: lease lost to another replica", slog.String("lease", k))
				return
			}
		}
	}
}

// Lock runs fn if this replica takes the named lock, held (renewed) while
// fn runs. It reports whether fn ran. With Redis unreachable fn runs: a
// replica alone does its own work.
func (c *Cluster) Lock(ctx context.Context, name string, fn func()) bool {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if !c.Acquire(lctx, "lock:"+name, "") {
		if c.redisUp(ctx) {
			return false
		}
	}
	fn()
	return true
}

func (c *Cluster) redisUp(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.rdb.Ping(ctx).Err() == nil
}

// Once runs fn on one replica at a time for name: a replica that finds the
// lock taken waits (up to wait) until it is released, then returns without
// running fn, so its caller reads what the other one recorded.
func (c *Cluster) Once(ctx context.Context, name string, wait time.Duration, fn func()) {
	deadline := time.Now().Add(wait)
	if c.Lock(ctx, name, fn) {
		return
	}
	// Held elsewhere: wait for its release, asking Redis every 20 ms at
	// first and every 250 ms at most (a minute's wait is 240 GETs, not
	// 3,000 per waiter).
	poll := 20 * time.Millisecond
	for c.Holder(ctx, "lock:"+name) != "" {
		if time.Now().After(deadline) || ctx.Err() != nil {
			fn() // the holder is slow or gone: do it ourselves
			return
		}
		time.Sleep(poll)
		poll = min(2*poll, 250*time.Millisecond)
	}
}
