package cache

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/rules"
)

// EvictEvery is how often the cache is checked against storage.max_size
// and storage.max_age without a commit asking sooner.
const EvictEvery = time.Minute

// maxNamedTags bounds the tags an eviction names in its log line.
const maxNamedTags = 100

// sharedTotalsEvery bounds how often a shared index is counted.
const sharedTotalsEvery = 10 * time.Second

// evictWait bounds how long a replica's pass waits for another's.
const evictWait = time.Minute

// Cluster is what eviction asks of the replicas sharing a store and
// index: one pass at a time (Lock), and a counter of the bytes every
// replica committed (Committed adds n and returns the total; false while
// it cannot be read).
type Cluster interface {
	Lock(ctx context.Context, name string, fn func()) bool
	Committed(ctx context.Context, n int64) (int64, bool)
}

// EvictorConfig is what eviction needs of the running server besides the
// store and the index; all but the limits optional.
type EvictorConfig struct {
	Log *slog.Logger
	// Now is the clock of storage.max_age (tests set another).
	Now func() time.Time
	// MaxSize (bytes) and MaxAge are the limits at start (SetMaxSize,
	// SetMaxAge on reload).
	MaxSize int64
	MaxAge  time.Duration
	// Rules are the rules in effect (pins and max_age per pattern).
	Rules func() *rules.Set
	// Down names the upstreams that are down or rate limited: what their
	// tags reach may be the only copy, kept while the cap allows.
	Down func() map[string]bool
	// Cluster is nil on one node.
	Cluster Cluster
}

// Evictor keeps the cache within storage.max_size and storage.max_age: by
// image (a manifest, an index with its platform manifests, and the blobs
// no kept image shares), least recently used first, down to 90 % of the
// cap. It is the one place that deletes for space; it deletes through
// Ops.Delete, the one deletion path, and the cache commands share its
// lock. In a cluster one replica evicts at a time, and a commit anywhere
// that takes the shared total over the cap starts a pass at once.
type Evictor struct {
	ops     *Ops
	index   cacheindex.Backend
	cfg     EvictorConfig
	mu      sync.Mutex // one pass (or cache command) at a time
	wake    chan struct{}
	maxSize atomic.Int64
	maxAge  atomic.Int64
	pinned  atomic.Int64 // pinned images' bytes, as the last pass found them
	over    atomic.Bool  // pinned images alone exceed the cap
	capNote atomic.Pointer[string]
	shared  struct {
		mu sync.Mutex
		t  cacheindex.Totals
		at time.Time
		// base is the cluster's committed-bytes counter read just before
		// the count (baseOK: it was read), so commits since are known.
		base   int64
		baseOK bool
	}
}

// NewEvictor returns the eviction of store and index, and the cache
// operations (ls, rm, prune, …) that share its lock, totals, protected
// content and pins; opsCfg adds what the server holds in memory.
func NewEvictor(store blobstore.Store, index cacheindex.Backend, cfg EvictorConfig, opsCfg OpsConfig) *Evictor {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rules == nil {
		cfg.Rules = func() *rules.Set { return nil }
	}
	if cfg.Down == nil {
		cfg.Down = func() map[string]bool { return nil }
	}
	e := &Evictor{index: index, cfg: cfg, wake: make(chan struct{}, 1)}
	e.maxSize.Store(cfg.MaxSize)
	e.maxAge.Store(int64(cfg.MaxAge))
	opsCfg.Log, opsCfg.Now, opsCfg.Lock, opsCfg.Totals = cfg.Log, cfg.Now, &e.mu, e.Totals
	opsCfg.Protected = func(ctx context.Context) (map[digest.Digest]bool, error) {
		_, p, err := e.protected(ctx)
		return p, err
	}
	opsCfg.Pinned = func(ctx context.Context) (map[digest.Digest]bool, error) {
		p, _, err := RulePolicy(ctx, index, cfg.Rules())
		return p, err
	}
	e.ops = NewOps(store, index, opsCfg)
	return e
}

// Ops are the cache operations on the same store and index.
func (e *Evictor) Ops() *Ops { return e.ops }

// SetMaxSize puts a new cap in effect (bytes; 0 is none).
func (e *Evictor) SetMaxSize(n int64) { e.maxSize.Store(n) }

// MaxSize is the cap in effect.
func (e *Evictor) MaxSize() int64 { return e.maxSize.Load() }

// SetMaxAge puts a new age limit in effect (0 is none).
func (e *Evictor) SetMaxAge(d time.Duration) { e.maxAge.Store(int64(d)) }

// MaxAge is the age limit in effect.
func (e *Evictor) MaxAge() time.Duration { return time.Duration(e.maxAge.Load()) }

// Pinned is what the last pass found of pinned images: their bytes, and
// whether they alone exceed the cap.
func (e *Evictor) Pinned() (int64, bool) { return e.pinned.Load(), e.over.Load() }

// Run evicts every EvictEvery, and at once when a commit asks, until ctx
// is done.
func (e *Evictor) Run(ctx context.Context) {
	t := time.NewTicker(EvictEvery)
	defer t.Stop()
	for {
		if _, _, err := e.Evict(ctx); err != nil {
			e.cfg.Log.Error("eviction", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.wake: // a commit took the store over the cap
		}
	}
}

// Committed is told of each commit (size bytes; 0 after a change of the
// cap) and asks Run for a pass at once when the store is now over the
// cap (the index keeps the running total; a shared one adds what every
// replica committed since it was counted).
func (e *Evictor) Committed(size int64) {
	grown := e.sharedGrowth(size)
	maxSize := e.maxSize.Load()
	if maxSize <= 0 || e.Totals().Bytes()+grown <= maxSize {
		return
	}
	select {
	case e.wake <- struct{}{}:
	default: // one is pending already
	}
}

// Evict deletes least-recently-used images once the total is over the cap
// (down to 90 % of it), and images unused for the age limit. Recently
// pulled content is a place in the LRU order, not a shield. Rules replace
// the age limit per pattern and pin images: a pinned image is never
// taken, even when the cap cannot be met without it (the log says so).
// The content of tags whose upstream is down (perhaps the only copy) is
// kept while the cap allows; when it does not, the cap wins and the log
// names the tags that lost their offline copy.
func (e *Evictor) Evict(ctx context.Context) (int, int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, freed, err := e.once(ctx, func() (int, int64, error) { return e.evict(ctx) })
	e.shared.mu.Lock()
	e.shared.at = time.Time{} // a shared index is counted again after a pass
	e.shared.mu.Unlock()
	return n, freed, err
}

func (e *Evictor) evict(ctx context.Context) (int, int64, error) {
	maxSize, maxAge, rs := e.maxSize.Load(), e.MaxAge(), e.cfg.Rules()
	if e.nothingToEvict(maxSize, maxAge > 0 || rs.Ages()) {
		e.over.Store(false) // within the cap (or none), pinned images too
		return 0, 0, nil
	}
	down, protected, err := e.protected(ctx)
	if err != nil {
		return 0, 0, err
	}
	pinned, maxAgeOf, err := RulePolicy(ctx, e.index, rs)
	if err != nil {
		return 0, 0, err
	}
	p, err := e.index.EvictionPlan(ctx, cacheindex.EvictPolicy{MaxSize: maxSize, MaxAge: maxAge, Protected: protected,
		Pinned: pinned, MaxAgeOf: maxAgeOf}, e.cfg.Now())
	if err != nil {
		return 0, 0, err
	}
	e.notePins(p, maxSize)
	if len(p.LostProtected) > 0 {
		e.cfg.Log.Warn("storage.max_size evicts content of tags whose upstream is down: they lost their offline copy",
			slog.Int("blobs", len(p.LostProtected)), slog.Any("tags", e.lostTags(ctx, p.LostProtected, down)))
	}
	n, freed, err := e.ops.Delete(ctx, p.Evict)
	if n > 0 {
		e.cfg.Log.Info("evicted cached images", slog.Int("images", len(p.Images)), slog.Int("files", n), slog.Int64("bytes", freed),
			slog.Int("protected", len(protected)), slog.Int64("stored_bytes", e.Totals().Bytes()))
	}
	return n, freed, err
}

// nothingToEvict reports that a pass would take nothing: no cap and no
// age limit, or within the cap with no age limit. (Over a million blobs
// the plan reads the whole index, about 1 s of CPU, every minute. The
// embedded index's running totals are exact; a shared index's count is
// periodic and may have failed, so there the plan decides.)
func (e *Evictor) nothingToEvict(maxSize int64, ages bool) bool {
	if maxSize <= 0 && !ages {
		return true
	}
	exact, ok := e.index.(totaler)
	return ok && !ages && exact.Totals().Bytes() <= maxSize
}

// notePins records what a pass found of pinned images, and says in the
// log, once each time it becomes so, that the cap cannot be met.
func (e *Evictor) notePins(p cacheindex.Plan, maxSize int64) {
	e.pinned.Store(p.PinnedBytes)
	over := maxSize > 0 && p.PinnedBytes > maxSize
	if was := e.over.Swap(over); over && !was {
		e.cfg.Log.Warn("pinned images alone exceed storage.max_size: they are kept, and the cap cannot be met",
			slog.Int64("pinned_bytes", p.PinnedBytes), slog.Int64("max_size", maxSize))
	} else if p.CapUnmet && !over {
		e.cfg.Log.Warn("storage.max_size cannot be met without evicting pinned images: they are kept",
			slog.Int64("pinned_bytes", p.PinnedBytes), slog.Int64("max_size", maxSize), slog.Int64("stored_bytes", e.Totals().Bytes()))
	}
}

// protected returns the upstreams that are down (or rate limited) and
// the digests their tags point to: what those reach is perhaps the only
// copy of it, and the eviction plan keeps it while the cap allows
// (cacheindex.EvictPolicy.Protected). The plan resolves what they reach
// from the graph it loads anyway: a walk here, one index lookup per
// digest, took 3.3 s of a 7 s pass over a million blobs.
func (e *Evictor) protected(ctx context.Context) (map[string]bool, map[digest.Digest]bool, error) {
	down := e.cfg.Down()
	if len(down) == 0 {
		return down, nil, nil
	}
	protected := map[digest.Digest]bool{}
	err := e.index.Tags(ctx, func(up, _, _ string, t cacheindex.TagEntry) error {
		if down[up] {
			protected[t.Digest] = true
		}
		return nil
	})
	return down, protected, err
}

// lostTags names (up to maxNamedTags) the tags of down upstreams that
// lost their offline copy: something they reach is in lost.
func (e *Evictor) lostTags(ctx context.Context, lostDigests []digest.Digest, down map[string]bool) []string {
	lost := map[digest.Digest]bool{}
	for _, d := range lostDigests {
		lost[d] = true
	}
	type downTag struct {
		name, up string
		d        digest.Digest
	}
	var candidates []downTag
	_ = e.index.Tags(ctx, func(up, repo, tag string, t cacheindex.TagEntry) error {
		if down[up] && len(candidates) < maxNamedTags {
			candidates = append(candidates, downTag{up + "/" + repo + ":" + tag, up, t.Digest})
		}
		return nil
	})
	var tags []string
	for _, c := range candidates { // a tag lost its copy if anything it reaches goes
		reach, err := e.index.Reachable(ctx, func(up string, t cacheindex.TagEntry) bool { return up == c.up && t.Digest == c.d })
		if err != nil {
			break
		}
		for d := range reach {
			if lost[d] {
				tags = append(tags, c.name)
				break
			}
		}
	}
	return tags
}

// Totals are the index's running totals on one node; on a shared index
// (Redis) a count of its blobs, made at most every sharedTotalsEvery.
func (e *Evictor) Totals() cacheindex.Totals {
	if exact, ok := e.index.(totaler); ok {
		return exact.Totals()
	}
	e.shared.mu.Lock()
	defer e.shared.mu.Unlock()
	if time.Since(e.shared.at) > sharedTotalsEvery {
		var base int64
		baseOK := false
		if e.cfg.Cluster != nil { // before the count: commits after it are counted twice at worst
			base, baseOK = e.cfg.Cluster.Committed(context.Background(), 0)
		}
		t, err := cacheindex.Count(context.Background(), e.index) // no request's: a count shared by whoever asks next
		e.shared.at = time.Now()
		if err != nil { // a part is not the count: keep the last one
			e.cfg.Log.Warn("count the shared index", slog.Any("error", err))
		} else {
			e.shared.t, e.shared.base, e.shared.baseOK = t, base, baseOK
		}
	}
	return e.shared.t
}

// sharedGrowth adds size, just committed here, to the cluster's counter of
// committed bytes and returns what every replica committed since the
// shared index was last counted: the count is made at most every
// sharedTotalsEvery, the cap is checked at each commit. 0 without a
// cluster or with Redis away.
func (e *Evictor) sharedGrowth(size int64) int64 {
	if e.cfg.Cluster == nil {
		return 0
	}
	now, ok := e.cfg.Cluster.Committed(context.Background(), size)
	if !ok {
		return 0
	}
	e.Totals() // counted again when due (the base moves to the counter then)
	e.shared.mu.Lock()
	defer e.shared.mu.Unlock()
	if !e.shared.baseOK {
		return 0
	}
	return max(now-e.shared.base, 0)
}

// once runs an eviction on one replica of the cluster at a time. A
// replica that finds another evicting waits for it to end (up to
// evictWait) and runs its own pass then: the other's plan was made
// before the commit that asked for this one.
func (e *Evictor) once(ctx context.Context, fn func() (int, int64, error)) (int, int64, error) {
	if e.cfg.Cluster == nil {
		return fn()
	}
	var n int
	var freed int64
	var err error
	poll := 50 * time.Millisecond
	for deadline := time.Now().Add(evictWait); !e.cfg.Cluster.Lock(ctx, "evict", func() { n, freed, err = fn() }); {
		if time.Now().After(deadline) || !sleepCtx(ctx, poll) {
			return 0, 0, nil // another replica evicts still; the next pass comes
		}
		poll = min(2*poll, time.Second)
	}
	return n, freed, err
}

// Collectors export the pinned bytes.
func (e *Evictor) Collectors() []prometheus.Collector {
	return []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_pinned_bytes",
		Help: "Bytes of images pinned by rules (pin: true), as of the last eviction pass that was over the cap or had an age limit."},
		func() float64 { return float64(e.pinned.Load()) })}
}

// Options adds, by option key, the limits in effect.
func (e *Evictor) Options(m map[string]string) {
	m["storage.max_size"], m["storage.max_age"] = strconv.FormatInt(e.MaxSize(), 10), e.MaxAge().String()
}
