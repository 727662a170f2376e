package cacheindex

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestEvictionKeepsPinned: a pinned image is never taken, by age or by a
// cap that takes everything else and still cannot be met (the plan says
// so, with the pinned bytes); a per-image max_age replaces the global one;
// "protected because the upstream is down" still yields to the cap.
func TestEvictionKeepsPinned(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"), time.Hour, WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	d := func(s string) digest.Digest { return digest.FromString(s) }
	shared, pinOwn, downOwn, otherOwn := d("shared"), d("pin-own"), d("down-own"), d("other-own")
	pinM, downM, otherM := d("pin-manifest"), d("down-manifest"), d("other-manifest")
	for _, b := range []digest.Digest{shared, pinOwn, downOwn, otherOwn} {
		if err := ix.PutBlob(t.Context(), b, 1000); err != nil {
			t.Fatal(err)
		}
	}
	for m, refs := range map[digest.Digest][]digest.Digest{pinM: {shared, pinOwn}, downM: {downOwn}, otherM: {otherOwn}} {
		if err := ix.PutManifest(t.Context(), "docker.io", "library/x", m, ManifestEntry{Size: 10, Refs: refs}); err != nil {
			t.Fatal(err)
		}
	}
	ix.Touch(pinM) // the pinned image is the least recently used
	clock = now.Add(time.Hour)
	ix.Touch(downM)
	clock = now.Add(2 * time.Hour)
	ix.Touch(otherM)

	// A 1000-byte cap: everything but the pinned image goes, the
	// protected one too, and the cap is still not met.
	p, err := ix.EvictionPlan(t.Context(), EvictPolicy{MaxSize: 1000, Pinned: map[digest.Digest]bool{pinM: true},
		Protected: map[digest.Digest]bool{downM: true}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(p.Evict)
	want := []digest.Digest{downM, downOwn, otherM, otherOwn}
	slices.Sort(want)
	if !slices.Equal(p.Evict, want) {
		t.Errorf("evict %v, want %v", p.Evict, want)
	}
	if !p.CapUnmet || p.PinnedBytes != 2010 {
		t.Errorf("CapUnmet %v, PinnedBytes %d; want true, 2010", p.CapUnmet, p.PinnedBytes)
	}

	// Age: every image is older than the global max_age but one rule
	// keeps "other" longer, and the pinned one is never old.
	clock = now.Add(50 * time.Hour)
	p, err = ix.EvictionPlan(t.Context(), EvictPolicy{MaxAge: 24 * time.Hour, Pinned: map[digest.Digest]bool{pinM: true},
		MaxAgeOf: map[digest.Digest]time.Duration{otherM: 72 * time.Hour}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(p.Evict)
	want = []digest.Digest{downM, downOwn}
	slices.Sort(want)
	if !slices.Equal(p.Evict, want) || p.CapUnmet {
		t.Errorf("by age: evict %v (cap unmet %v), want %v", p.Evict, p.CapUnmet, want)
	}
	// A rule's max_age of 0: never for age.
	p, _ = ix.EvictionPlan(t.Context(), EvictPolicy{MaxAge: time.Hour, MaxAgeOf: map[digest.Digest]time.Duration{downM: 0, otherM: 0, pinM: 0}}, clock)
	if len(p.Evict) != 0 {
		t.Errorf("max_age 0 by rule: evict %v", p.Evict)
	}
}
