package cacheindex

import (
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// EvictPolicy bounds the cache.
type EvictPolicy struct {
	MaxSize int64 // total blob bytes to keep; 0 is unlimited
	// LowWater is what an eviction brings the total down to once it is over
	// MaxSize (default 90 % of MaxSize), so one commit does not start an
	// eviction per blob.
	LowWater int64
	MaxAge   time.Duration // drop blobs not accessed for this long; 0 is off
	// Protected are digests kept while the cap allows it: the content of
	// tags whose upstream is unreachable (perhaps the only copy). When
	// evicting everything else does not bring the total within MaxSize,
	// the cap wins and protected blobs go too, least recently used first.
	Protected map[digest.Digest]bool
}

// Plan is what an eviction deletes.
type Plan struct {
	Evict []digest.Digest
	// LostProtected are the protected digests the cap took.
	LostProtected []digest.Digest
}

// EvictionPlan lists the blobs to delete under the policy, least recently
// used first: every unprotected blob older than MaxAge, then, when the total
// is over MaxSize, more down to LowWater (unprotected first; protected ones
// only as far as MaxSize needs). Being recently pulled is a place in the
// order, not a shield.
func (ix *Index) EvictionPlan(p EvictPolicy, now time.Time) (Plan, error) {
	return PlanEviction(ix, p, now)
}

// PlanEviction is EvictionPlan over any Backend's entries.
func PlanEviction(ix Backend, p EvictPolicy, now time.Time) (Plan, error) {
	if err := ix.Flush(); err != nil {
		return Plan{}, err
	}
	type entry struct {
		d digest.Digest
		e BlobEntry
	}
	var all []entry
	var total int64
	err := ix.Blobs(func(d digest.Digest, e BlobEntry) error {
		all = append(all, entry{d, e})
		total += e.Size
		return nil
	})
	if err != nil {
		return Plan{}, err
	}
	slices.SortFunc(all, func(a, b entry) int { return a.e.LastAccess.Compare(b.e.LastAccess) })
	low := p.LowWater
	if low <= 0 || low > p.MaxSize {
		low = p.MaxSize * 9 / 10
	}
	over := p.MaxSize > 0 && total > p.MaxSize
	var plan Plan
	taken := map[digest.Digest]bool{}
	for _, x := range all {
		if p.Protected[x.d] {
			continue
		}
		old := p.MaxAge > 0 && now.Sub(x.e.LastAccess) > p.MaxAge
		if !old && !(over && total > low) {
			continue
		}
		plan.Evict = append(plan.Evict, x.d)
		taken[x.d] = true
		total -= x.e.Size
	}
	for _, x := range all { // the cap wins over the offline copy
		if !(p.MaxSize > 0 && total > p.MaxSize) {
			break
		}
		if taken[x.d] {
			continue
		}
		plan.Evict = append(plan.Evict, x.d)
		plan.LostProtected = append(plan.LostProtected, x.d)
		total -= x.e.Size
	}
	return plan, nil
}

// Reachable returns every digest reachable from the tags keep selects:
// their manifests, platform manifests and blobs.
func (ix *Index) Reachable(keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error) {
	return ReachableFrom(ix, keep)
}

// ReachableFrom is Reachable over any Backend's entries.
func ReachableFrom(ix Backend, keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	var roots []digest.Digest
	err := ix.Tags(func(up, _, _ string, e TagEntry) error {
		if keep(up, e) {
			roots = append(roots, e.Digest)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for len(roots) > 0 {
		d := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if out[d] {
			continue
		}
		out[d] = true
		m, ok, err := ix.Manifest(d)
		if err != nil {
			return nil, err
		}
		if ok {
			roots = append(roots, m.Refs...)
		}
	}
	return out, nil
}
