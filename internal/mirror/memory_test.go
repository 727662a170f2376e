package mirror

import (
	"fmt"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
)

func manifestOf(body string) *Manifest {
	return &Manifest{Body: []byte(body), MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromString(body)}
}

// TestMemoryBound: many distinct manifests never take memory past its
// budget, and the ones read since the last sweep stay.
func TestMemoryBound(t *testing.T) {
	mem := newMemory(64 << 10)
	hot := manifestOf(fmt.Sprintf("%01000d", 0))
	mem.putManifest(hot)
	for i := 1; i < 10_000; i++ {
		mem.manifest(hot.Digest) // read between every put: never the one to go
		mem.putManifest(manifestOf(fmt.Sprintf("%01000d", i)))
		if _, b := mem.size(); b > 64<<10 {
			t.Fatalf("after %d manifests memory holds %d bytes, budget 64 KiB", i+1, b)
		}
	}
	if mem.manifest(hot.Digest) == nil {
		t.Error("a manifest read all along was dropped")
	}
	if n, _ := mem.size(); n > 65 {
		t.Errorf("%d manifests of 1000 bytes in a 64 KiB budget", n)
	}
	big := &Manifest{Body: make([]byte, maxMemoryManifest+1), Digest: digest.FromString("big")}
	mem.putManifest(big)
	if mem.manifest(big.Digest) != nil {
		t.Error("a manifest over the per-entry limit was kept")
	}
	off := newMemory(0)
	off.putManifest(hot)
	if off.manifest(hot.Digest) != nil {
		t.Error("memory off, yet a manifest was kept")
	}
}

// TestMemoryForget: forgetting a digest drops its manifest and the tags
// that point at it.
func TestMemoryForget(t *testing.T) {
	mem := newMemory(1 << 20)
	m := manifestOf("one")
	mem.putManifest(m)
	k := tagKey{"docker.io", "library/a", "latest"}
	mem.putTag(k, cacheindex.TagEntry{Digest: m.Digest})
	other := tagKey{"docker.io", "library/b", "latest"}
	mem.putTag(other, cacheindex.TagEntry{Digest: digest.FromString("two")})
	mem.forget(m.Digest)
	if mem.manifest(m.Digest) != nil {
		t.Error("forgotten manifest still in memory")
	}
	if _, ok := mem.tag(k, 0); ok {
		t.Error("tag of a forgotten manifest still in memory")
	}
	if _, ok := mem.tag(other, 0); !ok {
		t.Error("an unrelated tag was dropped")
	}
	if _, b := mem.size(); b != 0 {
		t.Errorf("%d bytes accounted after forgetting the only manifest", b)
	}
}
