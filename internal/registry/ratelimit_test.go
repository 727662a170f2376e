package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// TestRateLimitGatesOnlyCountedPulls: once the anonymous budget is spent
// (manifest GETs answered 429), cached tags still pull, an uncached tag
// gets 429 with Retry-After, and a cold blob of a cached manifest still
// fills from upstream with the right bytes: Docker Hub does not count blob
// downloads, so the mirror must not refuse them.
func TestRateLimitGatesOnlyCountedPulls(t *testing.T) {
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithTenLayerImage(2 << 20)}})
	ten := *e.imgs.TenLayer
	if _, err := e.pull(t, e.imgs.Single); err != nil {
		t.Fatal(err)
	}
	if r := e.do(t, "GET", "/v2/"+ten.Repo+"/manifests/"+ten.Tag); r.status != 200 {
		t.Fatalf("manifest: %d", r.status)
	}
	e.hub.SetRetryAfter(6 * time.Hour)
	e.hub.SetRateLimit(100, 0) // the budget is spent
	cold := e.imgs.ManifestList
	r := e.do(t, "GET", "/v2/"+cold.Repo+"/manifests/"+cold.Tag)
	if r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("uncached tag with the budget spent: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	h := e.up.Health()
	if len(h.Limited) != 1 || h.Limited[0].Kind != upstream.KindManifestGet {
		t.Fatalf("kinds held back: %+v", h.Limited)
	}
	e.hub.ResetCounters()
	for _, l := range ten.Layers {
		r := e.do(t, "GET", "/v2/"+ten.Repo+"/blobs/"+string(l.Digest))
		sum := sha256.Sum256(r.body)
		if r.status != 200 || r.err != nil || "sha256:"+hex.EncodeToString(sum[:]) != string(l.Digest) {
			t.Fatalf("cold blob of a cached manifest during the 429: %d %v %s", r.status, r.err, truncate(r.body))
		}
	}
	if n := e.hub.Count("GET", testenv.KindBlob); n < len(ten.Layers) {
		t.Errorf("the upstream saw %d blob GETs for %d cold layers", n, len(ten.Layers))
	}
	e.clock.Advance(2 * time.Minute) // past freshness: revalidation is a HEAD, not counted
	if _, err := e.pull(t, e.imgs.Single); err != nil {
		t.Fatalf("cached tag during the 429: %v", err)
	}
}
