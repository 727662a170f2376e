package registry

import (
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestMovedTagLeavesMemory: a tag served from memory moves upstream; once
// its freshness window is over, the revalidation finds the new digest and
// the next pulls get the new manifest, not the one kept in memory.
func TestMovedTagLeavesMemory(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	first, err := e.pull(t, img)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 { // hits, from memory
		if d, err := e.pull(t, img); err != nil || d != first {
			t.Fatalf("hit: %s %v", d, err)
		}
	}
	moved := e.hub.Seed(t, testenv.WithSeed(99)) // same names, new content
	if moved.Single.Digest == img.Digest {
		t.Fatal("the stand-in pushed the same manifest again")
	}
	e.hub.ResetCounters()
	if d, _ := e.pull(t, img); d != first {
		t.Fatalf("within the freshness window the tag changed to %s", d)
	}
	if n := e.hub.Count("", testenv.KindManifest); n != 0 {
		t.Fatalf("a fresh hit asked the upstream %d times", n)
	}
	e.clock.Advance(2 * time.Minute)
	for range 2 {
		d, err := e.pull(t, moved.Single)
		if err != nil {
			t.Fatal(err)
		}
		if d != string(moved.Single.Digest) {
			t.Fatalf("after the tag moved: %s, want %s", d, moved.Single.Digest)
		}
	}
}

// TestNoSniff: every answer, content or error, tells browsers not to
// guess a type.
func TestNoSniff(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	for _, p := range []string{"/v2/", "/v2/" + img.Repo + "/manifests/" + img.Tag, "/v2/" + img.Repo + "/blobs/" + string(img.Layers[0].Digest), "/v2/library/nope/manifests/x", "/v2/BAD/manifests/x"} {
		if r := e.do(t, "GET", p); r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s (%d): X-Content-Type-Options %q", p, r.status, r.header.Get("X-Content-Type-Options"))
		}
	}
}
