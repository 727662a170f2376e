// Package indextest is the suite every cacheindex.Backend runs:
// Run(t, open). The bbolt index and the Redis index pass the same tests.
package indextest

import (
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
)

// Open returns an empty index whose clock is now. Access times it records
// may be rounded to the millisecond.
type Open func(t *testing.T, now func() time.Time) cacheindex.Backend

// Run checks the Backend contract against indexes made by open.
func Run(t *testing.T, open Open) {
	t.Run("TagsManifestsHolds", func(t *testing.T) { tagsManifestsHolds(t, open) })
	t.Run("Origins", func(t *testing.T) { origins(t, open) })
	t.Run("TouchIsBatched", func(t *testing.T) { touchIsBatched(t, open) })
	t.Run("BlobsAndDelete", func(t *testing.T) { blobsAndDelete(t, open) })
	t.Run("EvictionPlan", func(t *testing.T) { evictionPlan(t, open) })
	t.Run("ProtectedReach", func(t *testing.T) { protectedReach(t, open) })
	t.Run("ProtectedReachThroughBlobEntry", func(t *testing.T) { protectedThroughBlobEntry(t, open) })
	t.Run("Reachable", func(t *testing.T) { reachable(t, open) })
	t.Run("EvictByImageKeepsSharedLayer", func(t *testing.T) { evictByImage(t, open) })
}

func tagsManifestsHolds(t *testing.T, open Open) {
	ix := open(t, time.Now)
	d := digest.FromString("m")
	layer := digest.FromString("l")
	now := time.Now().UTC().Truncate(time.Second)
	if err := ix.PutTag(t.Context(), "docker.io", "library/alpine", "3.20", cacheindex.TagEntry{Digest: d, MediaType: "x", Fetched: now, Checked: now}); err != nil {
		t.Fatal(err)
	}
	if err := ix.PutManifest(t.Context(), "docker.io", "library/alpine", d, cacheindex.ManifestEntry{MediaType: "x", Size: 10, Refs: []digest.Digest{layer}}); err != nil {
		t.Fatal(err)
	}
	e, ok, err := ix.Tag(t.Context(), "docker.io", "library/alpine", "3.20")
	if err != nil || !ok || e.Digest != d || !e.Checked.Equal(now) {
		t.Fatalf("Tag = %+v %v %v", e, ok, err)
	}
	if _, ok, _ := ix.Tag(t.Context(), "ghcr.io", "library/alpine", "3.20"); ok {
		t.Fatal("tags of two upstreams mixed")
	}
	m, ok, err := ix.Manifest(t.Context(), d)
	if err != nil || !ok || m.MediaType != "x" || m.Size != 10 || !slices.Equal(m.Refs, []digest.Digest{layer}) {
		t.Fatalf("Manifest = %+v %v %v", m, ok, err)
	}
	for _, tc := range []struct {
		up, repo string
		d        digest.Digest
		want     bool
	}{
		{"docker.io", "library/alpine", layer, true},
		{"docker.io", "library/alpine", d, true},
		{"docker.io", "library/busybox", layer, false},
		{"ghcr.io", "library/alpine", layer, false},
	} {
		if got, _ := ix.Holds(t.Context(), tc.up, tc.repo, tc.d); got != tc.want {
			t.Errorf("Holds(%s, %s, %s) = %v", tc.up, tc.repo, tc.d, got)
		}
	}
	other := digest.FromString("o")
	if err := ix.PutHolds(t.Context(), "docker.io", "library/busybox", other); err != nil {
		t.Fatal(err)
	}
	if ok, _ := ix.Holds(t.Context(), "docker.io", "library/busybox", other); !ok {
		t.Error("PutHolds not recorded")
	}
	if err := ix.PutManifestEntry(t.Context(), other, cacheindex.ManifestEntry{MediaType: "y"}); err != nil {
		t.Fatal(err)
	}
	if m, ok, _ := ix.Manifest(t.Context(), other); !ok || m.MediaType != "y" {
		t.Error("PutManifestEntry not recorded")
	}
	ix.PutTag(t.Context(), "docker.io", "a/b", "with\x00odd:chars", cacheindex.TagEntry{Digest: d})
	got := map[[3]string]bool{}
	ix.Tags(t.Context(), func(up, repo, tag string, e cacheindex.TagEntry) error {
		got[[3]string{up, repo, tag}] = true
		return nil
	})
	if len(got) != 2 || !got[[3]string{"docker.io", "library/alpine", "3.20"}] {
		t.Fatalf("Tags visited %v", got)
	}
	if err := ix.DeleteTag(t.Context(), "docker.io", "library/alpine", "3.20"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ix.Tag(t.Context(), "docker.io", "library/alpine", "3.20"); ok {
		t.Fatal("tag kept after DeleteTag")
	}
}

func origins(t *testing.T, open Open) {
	ix := open(t, time.Now)
	d := digest.FromString("x")
	if ok, err := ix.HasOrigin(t.Context(), "docker.io", d); ok || err != nil {
		t.Fatalf("HasOrigin before = %v %v", ok, err)
	}
	if err := ix.PutOrigin(t.Context(), "docker.io", d); err != nil {
		t.Fatal(err)
	}
	if ok, _ := ix.HasOrigin(t.Context(), "docker.io", d); !ok {
		t.Fatal("origin not recorded")
	}
	if ok, _ := ix.HasOrigin(t.Context(), "ghcr.io", d); ok {
		t.Fatal("origin of another upstream")
	}
}

func touchIsBatched(t *testing.T, open Open) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ix := open(t, func() time.Time { return now })
	d := digest.FromString("b")
	ix.PutBlob(t.Context(), d, 5)
	now = now.Add(time.Hour)
	ix.Touch(d)
	e, _, _ := ix.Blob(t.Context(), d)
	if !e.LastAccess.Equal(now.Add(-time.Hour)) {
		t.Fatalf("Touch wrote through before a flush: %v", e.LastAccess)
	}
	if err := ix.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	e, _, _ = ix.Blob(t.Context(), d)
	if !e.LastAccess.Equal(now) || e.Size != 5 {
		t.Fatalf("after flush: %+v", e)
	}
	// An older access flushed later does not move the time back, and a
	// touch of a blob deleted meanwhile does not bring it back.
	gone := digest.FromString("gone")
	ix.PutBlob(t.Context(), gone, 1)
	ix.TouchAll([]digest.Digest{gone})
	ix.DeleteBlob(t.Context(), gone)
	now = now.Add(-time.Minute)
	ix.Touch(d)
	if err := ix.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := ix.Blob(t.Context(), d); !e.LastAccess.Equal(now.Add(time.Minute)) {
		t.Fatalf("an older access moved the time back: %v", e.LastAccess)
	}
	if _, ok, _ := ix.Blob(t.Context(), gone); ok {
		t.Fatal("a flushed touch brought a deleted blob back")
	}
}

func blobsAndDelete(t *testing.T, open Open) {
	ix := open(t, time.Now)
	want := map[digest.Digest]int64{}
	for i := range 5 {
		d := digest.FromString(string(rune('a' + i)))
		want[d] = int64(100 + i)
		if err := ix.PutBlob(t.Context(), d, int64(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	m := digest.FromString("manifest")
	ix.PutManifestEntry(t.Context(), m, cacheindex.ManifestEntry{MediaType: "x"})
	got := map[digest.Digest]int64{}
	if err := ix.Blobs(t.Context(), func(d digest.Digest, e cacheindex.BlobEntry) error { got[d] = e.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Blobs = %v, want %v", got, want)
	}
	for d, n := range want {
		if got[d] != n {
			t.Errorf("size of %s = %d, want %d", d, got[d], n)
		}
	}
	d := digest.FromString("a")
	if err := ix.DeleteBlob(t.Context(), d); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ix.Blob(t.Context(), d); ok {
		t.Fatal("blob kept after DeleteBlob")
	}
	if err := ix.DeleteBlob(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := ix.Manifest(t.Context(), m); ok {
		t.Fatal("DeleteBlob of a manifest kept its entry")
	}
}

func evictionPlan(t *testing.T, open Open) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix := open(t, func() time.Time { return clock })
	var ds []digest.Digest
	for i := range 5 { // blob i last accessed i hours after the start, 100 bytes each
		d := digest.FromString(string(rune('a' + i)))
		ds = append(ds, d)
		clock = now.Add(time.Duration(i) * time.Hour)
		ix.PutBlob(t.Context(), d, 100)
	}
	clock = now.Add(10 * time.Hour)
	ix.Touch(ds[0]) // the oldest becomes the newest

	tests := []struct {
		name string
		p    cacheindex.EvictPolicy
		want []digest.Digest
		lost []digest.Digest
	}{
		{"unbounded", cacheindex.EvictPolicy{}, nil, nil},
		{"size: drop least recently used", cacheindex.EvictPolicy{MaxSize: 300, LowWater: 300}, []digest.Digest{ds[1], ds[2]}, nil},
		{"size: down to the low watermark", cacheindex.EvictPolicy{MaxSize: 300}, []digest.Digest{ds[1], ds[2], ds[3]}, nil},
		{"within the cap: nothing", cacheindex.EvictPolicy{MaxSize: 500}, nil, nil},
		{"age", cacheindex.EvictPolicy{MaxAge: 7*time.Hour + 30*time.Minute}, []digest.Digest{ds[1], ds[2]}, nil},
		{"protected kept while the cap allows", cacheindex.EvictPolicy{MaxSize: 300, LowWater: 300, Protected: map[digest.Digest]bool{ds[1]: true}}, []digest.Digest{ds[2], ds[3]}, nil},
		{"the cap wins over protected", cacheindex.EvictPolicy{MaxSize: 200, LowWater: 200, Protected: map[digest.Digest]bool{ds[1]: true, ds[2]: true, ds[3]: true}},
			[]digest.Digest{ds[4], ds[0], ds[1]}, []digest.Digest{ds[1]}},
	}
	for _, tt := range tests {
		got, err := ix.EvictionPlan(t.Context(), tt.p, clock)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Evict, tt.want) || !slices.Equal(got.LostProtected, tt.lost) {
			t.Errorf("%s: plan %v (lost %v), want %v (lost %v)", tt.name, got.Evict, got.LostProtected, tt.want, tt.lost)
		}
	}
}

// protectedReach: a protected digest is a tag's manifest (the caller
// does not resolve what it reaches); the plan keeps what it reaches while
// the cap allows, here the platform manifest of an index (the tag names
// the platform manifest, the index is the image) and its layer.
func protectedReach(t *testing.T, open Open) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix := open(t, func() time.Time { return clock })
	idx, plat, layer, other := digest.FromString("idx"), digest.FromString("plat"), digest.FromString("layer"), digest.FromString("other")
	ix.PutBlob(t.Context(), layer, 100)
	ix.PutManifest(t.Context(), "docker.io", "library/a", plat, cacheindex.ManifestEntry{Size: 10, Refs: []digest.Digest{layer}})
	ix.PutManifest(t.Context(), "docker.io", "library/a", idx, cacheindex.ManifestEntry{Size: 10, Refs: []digest.Digest{plat}})
	clock = now.Add(time.Hour) // newer than the image: without protection the image goes first
	ix.PutBlob(t.Context(), other, 100)
	p := cacheindex.EvictPolicy{MaxSize: 150, LowWater: 150, Protected: map[digest.Digest]bool{plat: true}}
	got, err := ix.EvictionPlan(t.Context(), p, clock)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got.Evict, layer) || slices.Contains(got.Evict, plat) || !slices.Contains(got.Evict, other) || len(got.LostProtected) != 0 {
		t.Errorf("plan %v (lost %v): want %s only, the protected image kept", got.Evict, got.LostProtected, other)
	}
	p.MaxSize, p.LowWater = 50, 50 // the cap wins
	if got, err = ix.EvictionPlan(t.Context(), p, clock); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got.Evict, layer) || !slices.Contains(got.LostProtected, layer) {
		t.Errorf("plan %v (lost %v): the cap must take the protected layer", got.Evict, got.LostProtected)
	}
}

// protectedThroughBlobEntry: a platform manifest first fetched through
// /blobs/ has a blob entry as well as its manifest entry; a protected index
// that references it still keeps it and its layer.
func protectedThroughBlobEntry(t *testing.T, open Open) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix := open(t, func() time.Time { return clock })
	idx, plat, layer, other := digest.FromString("idx"), digest.FromString("plat"), digest.FromString("layer"), digest.FromString("other")
	ix.PutBlob(t.Context(), layer, 100)
	ix.PutBlob(t.Context(), plat, 10) // fetched by digest through /blobs/ first
	ix.PutManifest(t.Context(), "docker.io", "library/a", plat, cacheindex.ManifestEntry{Size: 10, Refs: []digest.Digest{layer}})
	ix.PutManifest(t.Context(), "docker.io", "library/a", idx, cacheindex.ManifestEntry{Size: 10, Refs: []digest.Digest{plat}})
	clock = now.Add(time.Hour)
	ix.PutBlob(t.Context(), other, 100)
	got, err := ix.EvictionPlan(t.Context(), cacheindex.EvictPolicy{MaxSize: 150, LowWater: 150, Protected: map[digest.Digest]bool{idx: true}}, clock)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got.Evict, layer) || slices.Contains(got.Evict, plat) || !slices.Contains(got.Evict, other) {
		t.Errorf("plan %v: want %s only, the protected index's platform manifest and layer kept", got.Evict, other)
	}
}

func reachable(t *testing.T, open Open) {
	ix := open(t, time.Now)
	idx, plat, layer, other := digest.FromString("idx"), digest.FromString("plat"), digest.FromString("layer"), digest.FromString("other")
	ix.PutManifest(t.Context(), "docker.io", "library/a", idx, cacheindex.ManifestEntry{Refs: []digest.Digest{plat}})
	ix.PutManifest(t.Context(), "docker.io", "library/a", plat, cacheindex.ManifestEntry{Refs: []digest.Digest{layer}})
	ix.PutTag(t.Context(), "docker.io", "library/a", "1", cacheindex.TagEntry{Digest: idx})
	ix.PutTag(t.Context(), "ghcr.io", "x", "1", cacheindex.TagEntry{Digest: other})
	got, err := ix.Reachable(t.Context(), func(up string, _ cacheindex.TagEntry) bool { return up == "docker.io" })
	if err != nil {
		t.Fatal(err)
	}
	if !got[idx] || !got[plat] || !got[layer] || got[other] {
		t.Errorf("reachable %v", got)
	}
}

// evictByImage: eviction goes by image, least recently used first; a
// layer two images share stays while the other image is kept, and goes
// with the last one. The image plan of one image (cache rm) keeps it too.
func evictByImage(t *testing.T, open Open) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix := open(t, func() time.Time { return clock })
	shared, onlyA, onlyB := digest.FromString("shared"), digest.FromString("a-layer"), digest.FromString("b-layer")
	for _, d := range []digest.Digest{shared, onlyA, onlyB} {
		if err := ix.PutBlob(t.Context(), d, 1000); err != nil {
			t.Fatal(err)
		}
	}
	ma, mb := digest.FromString("manifest a"), digest.FromString("manifest b")
	if err := ix.PutManifest(t.Context(), "docker.io", "library/a", ma, cacheindex.ManifestEntry{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 10, Refs: []digest.Digest{shared, onlyA}}); err != nil {
		t.Fatal(err)
	}
	ix.TouchAll([]digest.Digest{ma, shared, onlyA})
	clock = now.Add(time.Hour) // b is used later than a
	if err := ix.PutManifest(t.Context(), "docker.io", "library/b", mb, cacheindex.ManifestEntry{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 10, Refs: []digest.Digest{shared, onlyB}}); err != nil {
		t.Fatal(err)
	}
	ix.TouchAll([]digest.Digest{mb, shared, onlyB})
	if err := ix.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(2 * time.Hour)
	plan, err := ix.EvictionPlan(t.Context(), cacheindex.EvictPolicy{MaxSize: 2500, LowWater: 2500}, clock)
	if err != nil {
		t.Fatal(err)
	}
	got := slices.Sorted(slices.Values(plan.Evict))
	want := slices.Sorted(slices.Values([]digest.Digest{ma, onlyA}))
	if !slices.Equal(got, want) || len(plan.Images) != 1 || plan.Images[0].Root != ma {
		t.Errorf("plan %v (images %+v), want image a without the shared layer: %v", plan.Evict, plan.Images, want)
	}
	ip, top, err := cacheindex.ImagePlanOf(t.Context(), ix, mb)
	if err != nil || !top {
		t.Fatalf("image plan of b: top %v, %v", top, err)
	}
	if got := slices.Sorted(slices.Values(ip.Evict)); !slices.Equal(got, slices.Sorted(slices.Values([]digest.Digest{mb, onlyB}))) {
		t.Errorf("image plan of b: %v, want b and its own layer only", got)
	}
}
