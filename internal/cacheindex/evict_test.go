package cacheindex

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestEvictionPlan(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"), time.Hour, WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var ds []digest.Digest
	for i := range 5 { // blob i last accessed i hours after the start, 100 bytes each
		d := digest.FromString(string(rune('a' + i)))
		ds = append(ds, d)
		clock = now.Add(time.Duration(i) * time.Hour)
		ix.PutBlob(d, 100)
	}
	clock = now.Add(10 * time.Hour)
	ix.Touch(ds[0]) // the oldest becomes the newest

	tests := []struct {
		name string
		p    EvictPolicy
		want []digest.Digest
		lost []digest.Digest
	}{
		{"unbounded", EvictPolicy{}, nil, nil},
		{"size: drop least recently used", EvictPolicy{MaxSize: 300, LowWater: 300}, []digest.Digest{ds[1], ds[2]}, nil},
		{"size: down to the low watermark (90 % by default)", EvictPolicy{MaxSize: 300}, []digest.Digest{ds[1], ds[2], ds[3]}, nil},
		{"within the cap: nothing", EvictPolicy{MaxSize: 500}, nil, nil},
		{"age", EvictPolicy{MaxAge: 7*time.Hour + 30*time.Minute}, []digest.Digest{ds[1], ds[2]}, nil},
		{"protected kept while the cap allows", EvictPolicy{MaxSize: 300, LowWater: 300, Protected: map[digest.Digest]bool{ds[1]: true}}, []digest.Digest{ds[2], ds[3]}, nil},
		{"the cap wins over protected", EvictPolicy{MaxSize: 200, LowWater: 200, Protected: map[digest.Digest]bool{ds[1]: true, ds[2]: true, ds[3]: true}},
			[]digest.Digest{ds[4], ds[0], ds[1]}, []digest.Digest{ds[1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ix.EvictionPlan(tt.p, clock)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Evict, tt.want) || !slices.Equal(got.LostProtected, tt.lost) {
				t.Errorf("plan %v (lost %v), want %v (lost %v)", got.Evict, got.LostProtected, tt.want, tt.lost)
			}
		})
	}
}

func TestReachable(t *testing.T) {
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	idx, plat, layer, other := digest.FromString("idx"), digest.FromString("plat"), digest.FromString("layer"), digest.FromString("other")
	ix.PutManifest("docker.io", "library/a", idx, ManifestEntry{Refs: []digest.Digest{plat}})
	ix.PutManifest("docker.io", "library/a", plat, ManifestEntry{Refs: []digest.Digest{layer}})
	ix.PutTag("docker.io", "library/a", "1", TagEntry{Digest: idx})
	ix.PutTag("ghcr.io", "x", "1", TagEntry{Digest: other})
	got, err := ix.Reachable(func(up string, _ TagEntry) bool { return up == "docker.io" })
	if err != nil {
		t.Fatal(err)
	}
	if !got[idx] || !got[plat] || !got[layer] || got[other] {
		t.Errorf("reachable %v", got)
	}
}
