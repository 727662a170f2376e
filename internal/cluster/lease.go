package cluster

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/upstream"
)

// Scripts that change a lease only while this fill holds it.
var (
	renewScript   = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) else return 0 end`)
	releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end`)
	// releaseHaveScript drops what a fill said it had received (haveKey),
	// if that fill (ARGV[1], its lease value) said it last.
	releaseHaveScript = redis.NewScript(`local v = redis.call("GET", KEYS[1])
if v and string.sub(v, 1, #ARGV[1] + 1) == ARGV[1] .. " " then return redis.call("DEL", KEYS[1]) else return 0 end`)
	// takeScript replaces a holder this replica found unreachable (or a
	// dead predecessor of this replica).
	takeScript = redis.NewScript(`local v = redis.call("GET", KEYS[1])
if v == false or v == ARGV[2] then redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[3]) return 1 else return 0 end`)
)

// A lease value names the fill holding it: the replica's URL, "#", and an
// id drawn for that one lease. Two fills of a digest on one replica hold
// different values, and a restarted replica (same URL) never mistakes its
// dead predecessor's lease for its own.
const tokenSep = "#"

// replicaOf is the replica named by a lease value (a value without an id,
// from an older version, is the replica itself).
func replicaOf(v string) string {
	r, _, _ := strings.Cut(v, tokenSep)
	return r
}

func (c *Cluster) newToken() string { return c.self + tokenSep + rand.Text() }

// Holder is the value of name's lease (see replicaOf), "" if none (or
// Redis is unreachable).
func (c *Cluster) Holder(ctx context.Context, name string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := c.rdb.Get(ctx, c.key("lease:"+name)).Result()
	if err != nil {
		return ""
	}
	return v
}

// mine reports whether a lease value is one of this process's leases.
func (c *Cluster) mine(v string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[v]
}

// Lease is a lease this process holds. Lost is closed at once when it
// stops being ours: renewing found another value (or none) under the key,
// or renewals failed for longer than the lease's TTL (it lapsed). A holder
// must stop the work the lease stands for when Lost closes.
type Lease struct {
	Lost  <-chan struct{}
	token string
	c     *Cluster
	name  string

	// have is how much of the blob the fill holding the lease has
	// received (the offset of its body plus what was read from it), made
	// known to the other replicas (haveKey) at most every haveEvery: a
	// replica taking the lease over while this one is frozen learns
	// that this one alone holds that prefix (Cluster.prefixFromStale).
	have        atomic.Int64
	publishedAt atomic.Int64 // unix ns
	publishing  atomic.Bool
	// lapsed is the lease value of another fill that said it had
	// received lapsedHave bytes of the blob and whose lease lapsed before
	// this one was taken ("" for none): a takeover, not a cold miss.
	lapsed     string
	lapsedHave int64
}

// Acquire takes name's lease for one fill of this replica, or over from
// stale (a holder value found unreachable or dead; "" for none), and keeps
// renewing it until ctx is done, then releases it. nil: not taken (held
// elsewhere, or Redis unreachable: the caller goes on alone).
func (c *Cluster) Acquire(ctx context.Context, name, stale string) *Lease {
	k := c.key("lease:" + name)
	token := c.newToken()
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	var ok bool
	var err error
	var lapsed string
	var lapsedHave int64
	if stale == "" {
		// With what a lapsed holder said it had received: one round trip.
		var set *redis.BoolCmd
		var have *redis.StringCmd
		_, err = c.rdb.Pipelined(rctx, func(p redis.Pipeliner) error {
			set = p.SetNX(rctx, k, token, c.leaseTTL)
			have = p.Get(rctx, c.haveKey(name))
			return nil
		})
		if errors.Is(err, redis.Nil) {
			err = nil
		}
		ok = set.Val()
		if v, n, found := strings.Cut(have.Val(), " "); found && !c.mine(v) {
			lapsed = v
			lapsedHave, _ = strconv.ParseInt(n, 10, 64)
		}
	} else {
		var n int64
		n, err = takeScript.Run(rctx, c.rdb, []string{k}, token, stale, c.leaseTTL.Milliseconds()).Int64()
		ok = n == 1
	}
	cancel()
	if err != nil || !ok {
		if err != nil && !errors.Is(err, redis.Nil) {
			c.log.Warn("cluster: lease not taken; fetching anyway", slog.String("lease", name), slog.Any("error", err))
		}
		return nil
	}
	lost := make(chan struct{})
	c.mu.Lock()
	c.held[token] = true
	c.mu.Unlock()
	c.renewals.Add(1)
	go c.renew(ctx, k, c.haveKey(name), token, lost)
	return &Lease{Lost: lost, token: token, c: c, name: name, lapsed: lapsed, lapsedHave: lapsedHave}
}

// haveEvery is how often, at most, a lease's holder makes known how much
// of the blob it has received.
const haveEvery = 250 * time.Millisecond

// haveKey holds "<lease value> <bytes>": how much of the blob the fill
// holding name's lease had received when it last said so.
func (c *Cluster) haveKey(name string) string { return c.key("have:" + name) }

// received records that the fill holding l has n bytes of the blob, and
// says so in Redis if haveEvery has passed since it last did (in the
// background: a read of the blob never waits for Redis).
func (l *Lease) received(n int64) {
	l.have.Store(n)
	now := time.Now().UnixNano()
	if now-l.publishedAt.Load() < int64(haveEvery) || !l.publishing.CompareAndSwap(false, true) {
		return
	}
	l.publishedAt.Store(now)
	go func() {
		defer l.publishing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		v := l.token + " " + strconv.FormatInt(l.have.Load(), 10)
		l.c.rdb.Set(ctx, l.c.haveKey(l.name), v, 3*l.c.leaseTTL)
	}()
}

// reportedHave is how much of the blob the fill holding the lease value
// token said it had received (0 when it said nothing, or another fill
// said it since).
func (c *Cluster) reportedHave(ctx context.Context, name, token string) int64 {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := c.rdb.Get(ctx, c.haveKey(name)).Result()
	if err != nil {
		return 0
	}
	t, n, ok := strings.Cut(v, " ")
	if !ok || t != token {
		return 0
	}
	have, _ := strconv.ParseInt(n, 10, 64)
	return have
}

// renew extends the lease every third of its TTL while ctx lasts, closing
// lost when the lease is no longer ours.
func (c *Cluster) renew(ctx context.Context, k, haveKey, token string, lost chan struct{}) {
	defer c.renewals.Done()
	defer func() {
		c.mu.Lock()
		delete(c.held, token)
		c.mu.Unlock()
	}()
	t := time.NewTicker(c.leaseTTL / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			releaseScript.Run(rctx, c.rdb, []string{k}, token)
			releaseHaveScript.Run(rctx, c.rdb, []string{haveKey}, token)
			cancel()
			return
		case <-t.C:
		}
		// After a freeze (SIGSTOP, a long GC, a suspended VM) the lease
		// may have lapsed even if the key still reads ours: it was
		// someone else's to take meanwhile.
		lapsed := time.Since(renewed) > c.leaseTTL
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := renewScript.Run(rctx, c.rdb, []string{k}, token, c.leaseTTL.Milliseconds()).Int64()
		cancel()
		switch {
		case err == nil && n == 0:
			c.log.Warn("cluster: lease lost; stopping its fetch", slog.String("lease", k))
		case err != nil && ctx.Err() == nil && lapsed:
			c.log.Warn("cluster: lease could not be renewed before it lapsed; stopping its fetch", slog.String("lease", k), slog.Any("error", err))
		case err == nil:
			renewed = time.Now()
			continue
		default:
			continue
		}
		close(lost)
		<-ctx.Done() // keep the token listed until the fill lets go
		return
	}
}

// Wait waits for the lease renewals to end (their fills stopped, so each
// released its lease).
func (c *Cluster) Wait() { c.renewals.Wait() }

// guard cuts b's body the moment lease is lost (the read in progress
// fails, and the fill resumes by Range from its new source), and counts
// what is read from it as received by the fill holding the lease.
func (l *Lease) guard(b *upstream.Blob) {
	l.received(b.Offset)
	b.Body = &counted{ReadCloser: cutOn(b.Body, l.Lost, errLeaseLost), n: b.Offset, lease: l}
}

// counted tells its lease how far the body it reads has got.
type counted struct {
	io.ReadCloser
	n     int64
	lease *Lease
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	c.lease.received(c.n)
	return n, err
}

// errLeaseLost is a fetch cut because its lease was lost.
var errLeaseLost = errors.New("cluster: lease lost to another replica")

// cutOn returns body, closed the moment stop closes, its reads failing
// with err from then on.
func cutOn(body io.ReadCloser, stop <-chan struct{}, err error) io.ReadCloser {
	g := &guarded{ReadCloser: body, done: make(chan struct{}), why: err}
	go func() {
		select {
		case <-stop:
			g.mu.Lock()
			g.lost = true
			g.mu.Unlock()
			body.Close()
		case <-g.done:
		}
	}()
	return g
}

type guarded struct {
	io.ReadCloser
	done chan struct{}
	why  error
	once sync.Once
	mu   sync.Mutex
	lost bool
}

func (g *guarded) Read(p []byte) (int, error) {
	n, err := g.ReadCloser.Read(p)
	g.mu.Lock()
	lost := g.lost
	g.mu.Unlock()
	if lost {
		return n, g.why
	}
	return n, err
}

func (g *guarded) Close() error {
	g.once.Do(func() { close(g.done) })
	return g.ReadCloser.Close()
}

// Lock runs fn if this replica takes the named lock, held (renewed) while
// fn runs. It reports whether fn ran. With Redis unreachable fn runs: a
// replica alone does its own work.
func (c *Cluster) Lock(ctx context.Context, name string, fn func()) bool {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.Acquire(lctx, "lock:"+name, "") == nil {
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
