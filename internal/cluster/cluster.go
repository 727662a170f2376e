// Package cluster lets replicas that share an S3 store and a Redis index
// fetch each digest from upstream once between them.
//
// Replicas register with a heartbeat (a Redis sorted set scored by the
// time of each one's last beat). The owner of a digest is chosen by
// rendezvous hashing over the live set; the replica fetching a digest from
// upstream holds a Redis lease for it, renewed while the fill runs. A
// replica asked for a digest it lacks streams the growing blob from the
// lease holder, else the owner, over an internal endpoint authenticated
// with the cluster's secret; that replica's own fill (and so its clients)
// reads from the peer exactly as it would from an upstream. When the peer
// cannot be reached, it is suspected (left out of the live set here for a
// while), the owner is chosen again, and if that is this replica it fetches
// the rest from upstream itself, by Range from what it already has.
//
// A fill that loses its lease (taken over while this process was frozen,
// or gone from Redis) stops fetching from upstream at once and goes on
// from the new holder, the store, or under the lease taken again.
//
// Nothing here ever answers 429 or 503 because another replica fetches:
// the worst case is fetching ourselves. Redis down: the last live set read
// stays the live set, so replicas still agree on owners and stream from
// them; a replica that stops answering is suspected and left out.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/httpguard"
)

// Cluster is this replica's view of the others.
type Cluster struct {
	rdb    redis.UniversalClient
	self   string
	secret string
	prefix string
	log    *slog.Logger
	http   *http.Client

	beat     time.Duration // heartbeat period
	ttl      time.Duration // a replica silent this long is gone
	leaseTTL time.Duration
	suspect  time.Duration // how long an unreachable peer is left out

	// wrong secrets on the internal endpoint: slowed down per address
	guess             *httpguard.Backoff[netip.Addr]
	failed, throttled atomic.Int64

	renewals sync.WaitGroup // lease renewals running
	stored   Stored         // nil: no store to resume from

	mu        sync.Mutex
	live      []string // sorted, always including self
	suspected map[string]time.Time
	redisOK   bool
	// heard is when the live set was last read from Redis: while Redis
	// is away the last one read stays the live set (owners agree without
	// Redis), and suspicion still drops the replicas that stop answering.
	heard time.Time
	held  map[string]bool // the lease values this process holds
	// badMembers are members read from Redis that are no replica's URL,
	// logged once each.
	badMembers map[string]bool
}

// Option configures a Cluster.
type Option func(*Cluster)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *Cluster) { c.log = l } }

// WithPrefix sets the Redis key prefix (default "regcache:").
func WithPrefix(p string) Option { return func(c *Cluster) { c.prefix = p } }

// WithTiming sets the heartbeat period, after how long without one a
// replica is gone (default 1s, 5s) and the lease TTL (default 10s; renewed
// every third of it).
func WithTiming(beat, ttl, lease time.Duration) Option {
	return func(c *Cluster) { c.beat, c.ttl, c.leaseTTL = beat, ttl, lease }
}

// Stored opens a committed blob of the shared store with its size
// (blobstore.ErrNotFound, or any error, when it cannot).
type Stored func(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, int64, error)

// WithStored sets where a fill whose lease was lost looks for the blob
// before fetching the rest itself: the replica that took its lease over
// may have committed it meanwhile.
func WithStored(fn Stored) Option { return func(c *Cluster) { c.stored = fn } }

// New makes this replica, reachable by others at advertise, a member.
// Run starts its heartbeat.
func New(rdb redis.UniversalClient, advertise, secret string, opts ...Option) *Cluster {
	c := &Cluster{rdb: rdb, self: advertise, secret: secret, prefix: "regcache:", log: slog.New(slog.DiscardHandler),
		http: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
			ResponseHeaderTimeout: 2 * time.Minute}},
		beat: time.Second, ttl: 5 * time.Second, leaseTTL: 10 * time.Second, suspect: 15 * time.Second,
		live: []string{advertise}, suspected: map[string]time.Time{}, held: map[string]bool{}, badMembers: map[string]bool{}, guess: httpguard.NewBackoff[netip.Addr](5, time.Minute, nil)}
	for _, o := range opts {
		o(c)
	}
	return c
}

// AuthFailures is how many requests to the internal endpoint carried a
// wrong secret, and how many its per-address backoff refused unchecked.
func (c *Cluster) AuthFailures() (failed, throttled int64) {
	return c.failed.Load(), c.throttled.Load()
}

// Self is this replica's advertised URL.
func (c *Cluster) Self() string { return c.self }

func (c *Cluster) key(name string) string { return c.prefix + "cluster:" + name }

// Run beats until ctx is done, then leaves the member set.
func (c *Cluster) Run(ctx context.Context) {
	t := time.NewTicker(c.beat)
	defer t.Stop()
	for {
		c.heartbeat(ctx)
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.Background(), time.Second)
			c.rdb.ZRem(lctx, c.key("members"), c.self)
			cancel()
			return
		case <-t.C:
		}
	}
}

// Join beats once, so the member set has this replica before it serves.
func (c *Cluster) Join(ctx context.Context) error {
	if !c.heartbeat(ctx) {
		return errors.New("cluster.redis: Redis does not answer")
	}
	return nil
}

// heartbeat records this replica's beat and reads the live set.
func (c *Cluster) heartbeat(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, c.beat*2)
	defer cancel()
	now := time.Now()
	members := c.key("members")
	var rng *redis.StringSliceCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, members, redis.Z{Score: float64(now.UnixMilli()), Member: c.self})
		p.ZRemRangeByScore(ctx, members, "-inf", fmt.Sprint(now.Add(-10*c.ttl).UnixMilli()))
		rng = p.ZRangeByScore(ctx, members, &redis.ZRangeBy{Min: fmt.Sprint(now.Add(-c.ttl).UnixMilli()), Max: "+inf"})
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.redisOK {
			c.log.Warn("cluster: Redis does not answer; keeping the last known replicas as the live set until it does",
				slog.Any("replicas", c.live), slog.Any("error", err))
		}
		c.redisOK = false
		return false
	}
	if !c.redisOK {
		c.log.Info("cluster: joined", slog.String("self", c.self))
	}
	c.redisOK = true
	c.heard = now
	live := slices.DeleteFunc(rng.Val(), func(m string) bool {
		if memberURL(m) {
			return false
		}
		// Whoever can write to Redis must not get the secret sent to a
		// URL of its choosing: only http(s)://host[:port] is a replica.
		if !c.badMembers[m] && len(c.badMembers) < 100 { // said once each, not every beat
			c.badMembers[m] = true
			c.log.Warn("cluster: ignoring a member that is not http(s)://host[:port]", slog.String("member", m))
		}
		return true
	})
	if !slices.Contains(live, c.self) {
		live = append(live, c.self)
	}
	slices.Sort(live)
	if !slices.Equal(live, c.live) {
		c.log.Info("cluster: live replicas", slog.Any("replicas", live))
	}
	c.live = live
	return true
}

// memberURL reports whether m is a replica's advertised URL:
// http(s)://host[:port], nothing else (no user, path, query or fragment).
func memberURL(m string) bool {
	u, err := url.Parse(m)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Hostname() != "" &&
		u.User == nil && u.Opaque == "" && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && !u.ForceQuery &&
		u.Fragment == "" && !strings.ContainsAny(m, "#?@\\ ")
}

// Live is the replicas taken as live here: heartbeating, and not suspected.
func (c *Cluster) Live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	out := make([]string, 0, len(c.live))
	for _, m := range c.live {
		if until, ok := c.suspected[m]; ok && now.Before(until) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// Suspect leaves a peer that could not be reached out of the live set here
// for a while (its heartbeat may not have lapsed yet).
func (c *Cluster) Suspect(peer string) {
	if peer == c.self {
		return
	}
	c.mu.Lock()
	c.suspected[peer] = time.Now().Add(c.suspect)
	c.mu.Unlock()
}

func (c *Cluster) isLive(peer string) bool { return slices.Contains(c.Live(), peer) }

// View is this replica's view of the cluster: how many replicas it takes
// as live (itself included), whether that set was read from Redis at the
// last heartbeat (false: Redis is away and the set is the last one read),
// and how many leases its fills hold.
type View struct {
	Live    int
	Trusted bool
	Leases  int
}

// View returns this replica's view of the cluster.
func (c *Cluster) View() View {
	live := len(c.Live())
	c.mu.Lock()
	defer c.mu.Unlock()
	return View{Live: live, Trusted: c.redisOK, Leases: len(c.held)}
}

// heartbeating reports whether peer was in the live set last read from
// Redis (suspected or not).
func (c *Cluster) heartbeating(peer string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.live, peer)
}

// Owner is the replica rendezvous hashing picks for key among the live
// ones: each scores hash(replica, key), the highest wins. A replica
// joining or leaving moves only the keys it wins or held.
func (c *Cluster) Owner(key string) string {
	var best string
	var bestScore uint64
	for _, m := range c.Live() {
		h := sha256.Sum256([]byte(m + "\x00" + key))
		if s := binary.BigEndian.Uint64(h[:8]); best == "" || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

// Committed adds n to the bytes committed to the shared store by every
// replica (a Redis counter each commit adds to) and returns the counter;
// n = 0 reads it. The counter only grows: the difference between two
// readings is what was committed between them. false: Redis does not
// answer.
func (c *Cluster) Committed(ctx context.Context, n int64) (int64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := c.rdb.IncrBy(ctx, c.key("committed"), n).Result()
	return v, err == nil
}
