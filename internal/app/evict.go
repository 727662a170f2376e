package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
)

// evictEvery is how often the cache is checked against storage.max_size and
// storage.max_age.
const evictEvery = time.Minute

// maxNamedTags bounds the tags an eviction names in its log line.
const maxNamedTags = 100

// Evict deletes least-recently-used images once the total is over
// storage.max_size (down to 90 % of it), and images unused for
// storage.max_age: a manifest (an index with its platform manifests) and
// the blobs no kept image shares (cacheindex.EvictionPlan). Recently pulled
// content is a place in the LRU order, not a shield. Rules replace the age
// limit per pattern (max_age) and pin images: a pinned image is never
// taken, even when the cap cannot be met without it (the log says so). The content of tags whose upstream is down (perhaps the only
// copy) is kept while the cap allows; when it does not, the cap wins and
// the log names the tags that lost their offline copy.
func (a *App) Evict(ctx context.Context) (int, int64, error) {
	a.evictMu.Lock()
	defer a.evictMu.Unlock()
	n, freed, err := a.evictOnce(ctx, func() (int, int64, error) { return a.evict(ctx) })
	a.sharedTotals.mu.Lock()
	a.sharedTotals.at = time.Time{} // a shared index is counted again after a pass
	a.sharedTotals.mu.Unlock()
	return n, freed, err
}

func (a *App) evict(ctx context.Context) (int, int64, error) {
	maxSize := a.maxSize.Load()
	rs := a.ruleSet()
	if a.nothingToEvict(maxSize, a.config().Storage.MaxAge > 0 || rs.Ages()) {
		a.pins.over.Store(false) // within the cap (or none), pinned images too
		return 0, 0, nil
	}
	down, protected, err := a.downProtected(ctx)
	if err != nil {
		return 0, 0, err
	}
	pinned, maxAgeOf, err := a.rulePolicy(ctx, rs)
	if err != nil {
		return 0, 0, err
	}
	p, err := a.index.EvictionPlan(ctx, cacheindex.EvictPolicy{MaxSize: maxSize, MaxAge: a.config().Storage.MaxAge, Protected: protected,
		Pinned: pinned, MaxAgeOf: maxAgeOf}, a.now())
	if err != nil {
		return 0, 0, err
	}
	a.notePins(p, maxSize)
	if len(p.LostProtected) > 0 {
		a.log.Warn("storage.max_size evicts content of tags whose upstream is down: they lost their offline copy",
			slog.Int("blobs", len(p.LostProtected)), slog.Any("tags", a.lostTags(ctx, p.LostProtected, down)))
	}
	n, freed, err := a.ops.Delete(ctx, p.Evict)
	if n > 0 {
		a.log.Info("evicted cached images", slog.Int("images", len(p.Images)), slog.Int("files", n), slog.Int64("bytes", freed),
			slog.Int("protected", len(protected)), slog.Int64("stored_bytes", a.totals().Bytes()))
	}
	return n, freed, err
}

// nothingToEvict reports that a pass would take nothing: no cap and no
// age limit, or within the cap with no age limit. (Over a million blobs
// the plan reads the whole index, about 1 s of CPU, every minute. The
// embedded index's running totals are exact; a shared index's count is
// periodic and may have failed, so there the plan decides.)
func (a *App) nothingToEvict(maxSize int64, ages bool) bool {
	if maxSize <= 0 && !ages {
		return true
	}
	exact, ok := a.index.(interface{ Totals() cacheindex.Totals })
	return ok && !ages && exact.Totals().Bytes() <= maxSize
}

// lostTags names (up to maxNamedTags) the tags of down upstreams that
// lost their offline copy: something they reach is in lost.
func (a *App) lostTags(ctx context.Context, lostDigests []digest.Digest, down map[string]bool) []string {
	lost := map[digest.Digest]bool{}
	for _, d := range lostDigests {
		lost[d] = true
	}
	type downTag struct {
		name, up string
		d        digest.Digest
	}
	var candidates []downTag
	_ = a.index.Tags(ctx, func(up, repo, tag string, e cacheindex.TagEntry) error {
		if down[up] && len(candidates) < maxNamedTags {
			candidates = append(candidates, downTag{up + "/" + repo + ":" + tag, up, e.Digest})
		}
		return nil
	})
	var tags []string
	for _, c := range candidates { // a tag lost its copy if anything it reaches goes
		reach, err := a.index.Reachable(ctx, func(up string, e cacheindex.TagEntry) bool { return up == c.up && e.Digest == c.d })
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

// newOps is the cache commands' and eviction's work on the running
// mirror's store and index, serialised with its eviction.
func (a *App) newOps() *cache.Ops {
	return cache.NewOps(a.store, a.index, cache.OpsConfig{Log: a.log, Now: a.now, Lock: &a.evictMu, Totals: a.totals,
		Forget: func(ds ...digest.Digest) {
			if a.content != nil {
				a.content.Forget(ds...)
			}
		},
		Protected: func(ctx context.Context) (map[digest.Digest]bool, error) {
			_, p, err := a.downProtected(ctx)
			return p, err
		},
		ForgetTag: func(upstream, repo, tag string) {
			if a.content != nil {
				a.content.ForgetTag(upstream, repo, tag)
			}
		},
		Rule:    a.ruleName,
		Missing: a.sealedMisses,
		Pinned: func(ctx context.Context) (map[digest.Digest]bool, error) {
			p, _, err := a.rulePolicy(ctx, a.ruleSet())
			return p, err
		}})
}

// downProtected returns the upstreams that are down (or rate limited) and
// the digests their tags point to: what those reach is perhaps the only
// copy of it, and the eviction plan keeps it while the cap allows
// (cacheindex.EvictPolicy.Protected). The plan resolves what they reach
// from the graph it loads anyway: a walk here, one index lookup per
// digest, took 3.3 s of a 7 s pass over a million blobs.
func (a *App) downProtected(ctx context.Context) (map[string]bool, map[digest.Digest]bool, error) {
	down := map[string]bool{}
	for _, u := range a.upstreams {
		if h := u.Client.Health(); h.Down || !h.LimitedUntil.IsZero() {
			down[u.Name] = true
		}
	}
	if len(down) == 0 {
		return down, nil, nil
	}
	protected := map[digest.Digest]bool{}
	err := a.index.Tags(ctx, func(up, _, _ string, e cacheindex.TagEntry) error {
		if down[up] {
			protected[e.Digest] = true
		}
		return nil
	})
	return down, protected, err
}

func (a *App) evictLoop(ctx context.Context) {
	t := time.NewTicker(evictEvery)
	defer t.Stop()
	for {
		if _, _, err := a.Evict(ctx); err != nil {
			a.log.Error("eviction", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.evictNow: // a commit took the store over the cap
		}
	}
}

// committed asks the eviction loop to run at once when a commit took the
// store over storage.max_size (the index keeps the running total; a shared
// one adds what every replica committed since it was counted).
func (a *App) committed(size int64) {
	grown := a.sharedGrowth(size)
	maxSize := a.maxSize.Load()
	if maxSize <= 0 || a.totals().Bytes()+grown <= maxSize {
		return
	}
	select {
	case a.evictNow <- struct{}{}:
	default: // one is pending already
	}
}

// totals are the index's running totals on one node; on a shared index
// (Redis) a count of its blobs, made at most every sharedTotalsEvery.
func (a *App) totals() cacheindex.Totals {
	if exact, ok := a.index.(interface{ Totals() cacheindex.Totals }); ok {
		return exact.Totals()
	}
	a.sharedTotals.mu.Lock()
	defer a.sharedTotals.mu.Unlock()
	if time.Since(a.sharedTotals.at) > sharedTotalsEvery {
		var base int64
		baseOK := false
		if a.cluster != nil { // before the count: commits after it are counted twice at worst
			base, baseOK = a.cluster.Committed(context.Background(), 0)
		}
		t, err := cacheindex.Count(context.Background(), a.index) // no request's: a count shared by whoever asks next
		a.sharedTotals.at = time.Now()
		if err != nil { // a part is not the count: keep the last one
			a.log.Warn("count the shared index", slog.Any("error", err))
		} else {
			a.sharedTotals.t, a.sharedTotals.base, a.sharedTotals.baseOK = t, base, baseOK
		}
	}
	return a.sharedTotals.t
}

// sharedTotalsEvery bounds how often a shared index is counted.
const sharedTotalsEvery = 10 * time.Second
