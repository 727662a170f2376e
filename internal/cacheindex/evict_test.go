package cacheindex

import (
	"path/filepath"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestEvictionByImage: two images sharing a layer; evicting the older one
// takes its own layer and manifest and keeps the shared layer, which the
// newer image still needs; an index goes with its platform manifests.
func TestEvictionByImage(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"), time.Hour, WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	d := func(s string) digest.Digest { return digest.FromString(s) }
	shared, oldOwn, newOwn, idxOwn := d("shared"), d("old-own"), d("new-own"), d("idx-own")
	oldM, newM, idx, plat := d("old-manifest"), d("new-manifest"), d("index"), d("platform")
	for _, b := range []digest.Digest{shared, oldOwn, newOwn, idxOwn} {
		if err := ix.PutBlob(t.Context(), b, 1000); err != nil {
			t.Fatal(err)
		}
	}
	put := func(m digest.Digest, refs ...digest.Digest) {
		t.Helper()
		if err := ix.PutManifest(t.Context(), "docker.io", "library/x", m, ManifestEntry{Size: 10, Refs: refs}); err != nil {
			t.Fatal(err)
		}
	}
	put(oldM, shared, oldOwn)
	put(newM, shared, newOwn)
	put(plat, idxOwn)
	put(idx, plat)
	if got := ix.Totals(); got.Blobs != 4 || got.BlobBytes != 4000 || got.Manifests != 4 || got.Bytes() != 4040 {
		t.Fatalf("totals %+v", got)
	}
	clock = now.Add(time.Hour)
	ix.Touch(idx)
	clock = now.Add(2 * time.Hour)
	ix.Touch(oldM)
	clock = now.Add(3 * time.Hour)
	ix.Touch(newM)

	// 4040 bytes over a 3300-byte cap (low water 2970): the index goes
	// first (the least recently used), then the old image.
	p, err := ix.EvictionPlan(t.Context(), EvictPolicy{MaxSize: 3300}, clock)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(p.Evict)
	want := []digest.Digest{idx, plat, idxOwn, oldM, oldOwn}
	slices.Sort(want)
	if !slices.Equal(p.Evict, want) {
		t.Errorf("evicted %v, want %v (the shared layer %s stays)", p.Evict, want, shared)
	}
	if len(p.Images) != 2 || p.Images[0].Root != idx || p.Images[1].Root != oldM || p.Images[1].Bytes != 1010 {
		t.Errorf("images %+v", p.Images)
	}
	// The cap wins: with everything over, the shared layer goes with the
	// last image holding it.
	p, err = ix.EvictionPlan(t.Context(), EvictPolicy{MaxSize: 1, LowWater: 1}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.Evict, shared) || len(p.Evict) != 8 {
		t.Errorf("evicting all: %v", p.Evict)
	}
	// max_age with the index's clock: what was not used for 30 minutes.
	p, err = ix.EvictionPlan(t.Context(), EvictPolicy{MaxAge: 30 * time.Minute}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Images) != 2 || p.Images[0].Root != idx || p.Images[1].Root != oldM {
		t.Errorf("max_age took %+v", p.Images)
	}
	// Deleting keeps the totals.
	if freed, err := ix.DeleteBlobs(t.Context(), []digest.Digest{oldM, oldOwn}); err != nil || freed != 1010 {
		t.Fatalf("deleted %d bytes: %v", freed, err)
	}
	if got := ix.Totals(); got.Blobs != 3 || got.Manifests != 3 || got.Bytes() != 3030 {
		t.Errorf("totals after delete %+v", got)
	}
}

// TestEvictionPlanRestoresGC: a pass lowers the collector's target for its
// duration only, and leaves a lower one (or GOGC=off) as it was.
func TestEvictionPlanRestoresGC(t *testing.T) {
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.PutBlob(t.Context(), digest.FromString("a"), 100); err != nil {
		t.Fatal(err)
	}
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	for _, before := range []int{100, 10, -1} {
		debug.SetGCPercent(before)
		if _, err := ix.EvictionPlan(t.Context(), EvictPolicy{MaxSize: 50}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := debug.SetGCPercent(before); got != before {
			t.Errorf("GC percent %d before a pass, %d after", before, got)
		}
	}
}
