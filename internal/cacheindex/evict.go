package cacheindex

import (
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
)

// EvictPolicy bounds the cache.
type EvictPolicy struct {
	MaxSize int64         // total blob bytes to keep; 0 is unlimited
	MaxAge  time.Duration // drop blobs not accessed for this long; 0 is off
	// Protected are digests that must stay whatever their age: the content
	// of tags whose upstream is unreachable (the only copy).
	Protected map[digest.Digest]bool
}

// EvictionPlan lists the blobs to delete under the policy, least recently
// used first: every blob older than MaxAge, then more until the total is
// within MaxSize. Protected blobs are never listed.
func (ix *Index) EvictionPlan(p EvictPolicy, now time.Time) ([]digest.Digest, error) {
	if err := ix.Flush(); err != nil {
		return nil, err
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
		return nil, err
	}
	slices.SortFunc(all, func(a, b entry) int { return a.e.LastAccess.Compare(b.e.LastAccess) })
	var plan []digest.Digest
	for _, x := range all {
		if p.Protected[x.d] {
			continue
		}
		old := p.MaxAge > 0 && now.Sub(x.e.LastAccess) > p.MaxAge
		over := p.MaxSize > 0 && total > p.MaxSize
		if !old && !over {
			continue
		}
		plan = append(plan, x.d)
		total -= x.e.Size
	}
	return plan, nil
}

// Reachable returns every digest reachable from the tags keep selects:
// their manifests, platform manifests and blobs.
func (ix *Index) Reachable(keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error) {
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
