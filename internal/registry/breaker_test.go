package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

func breakerOpen(h upstream.Health, scope string) bool {
	for _, b := range h.Breakers {
		if b.Scope == scope {
			return b.Open
		}
	}
	return false
}

// TestBreakerScopedToManifests: 503s on manifests open the manifests
// breaker only: cached tags are served stale, uncached blobs keep filling
// during the fault, and once the upstream answers again the first
// uncached manifest request succeeds.
func TestBreakerScopedToManifests(t *testing.T) {
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithTenLayerImage(2 << 20)}})
	a, b := e.imgs.Single, *e.imgs.TenLayer
	if _, err := e.pull(t, a); err != nil {
		t.Fatal(err)
	}
	// b's manifest is cached, none of its blobs.
	if r := e.do(t, "GET", "/v2/"+b.Repo+"/manifests/"+b.Tag); r.status != 200 {
		t.Fatalf("manifest of %s: %d %s", b.Repo, r.status, r.body)
	}
	e.hub.Fail(testenv.KindManifest, 503)
	e.clock.Advance(2 * time.Minute) // past freshness: every pull revalidates
	for range 10 {
		if _, err := e.pull(t, a); err != nil {
			t.Fatalf("cached tag during the fault: %v", err)
		}
	}
	h := e.up.Health()
	if !breakerOpen(h, upstream.ScopeManifests) || breakerOpen(h, upstream.ScopeBlobs) {
		t.Fatalf("breakers after manifest 503s: %+v", h.Breakers)
	}
	for _, l := range b.Layers {
		r := e.do(t, "GET", "/v2/"+b.Repo+"/blobs/"+string(l.Digest))
		sum := sha256.Sum256(r.body)
		if r.status != 200 || r.err != nil || "sha256:"+hex.EncodeToString(sum[:]) != string(l.Digest) {
			t.Fatalf("uncached blob during a manifest fault: %d %v %s", r.status, r.err, truncate(r.body))
		}
	}
	// The upstream heals. The first cold manifest request after the
	// probe interval is the probe, and it is served.
	e.hub.Fail(testenv.KindManifest, 0)
	e.clock.Advance(2 * time.Second)
	cold := e.imgs.ManifestList
	if r := e.do(t, "GET", "/v2/"+cold.Repo+"/manifests/"+cold.Tag); r.status != 200 {
		t.Fatalf("first cold manifest after recovery: %d %s", r.status, r.body)
	}
	if h := e.up.Health(); h.Down || breakerOpen(h, upstream.ScopeManifests) {
		t.Fatalf("breaker not closed by a successful probe: %+v", h)
	}
}

// TestBreakerDownThenUp: with the whole upstream down, cold requests fail
// fast; the first request after it is back (and the probe interval has
// passed) succeeds, with no timer to wait out.
func TestBreakerDownThenUp(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.hub.Down()
	cold := e.imgs.Single
	for range 8 {
		if r := e.do(t, "GET", "/v2/"+cold.Repo+"/manifests/"+cold.Tag); r.status != 503 {
			t.Fatalf("cold manifest with the upstream down: %d %s", r.status, r.body)
		}
	}
	if !e.up.Health().Down {
		t.Fatal("upstream not reported down")
	}
	start := time.Now()
	r := e.do(t, "GET", "/v2/"+cold.Repo+"/manifests/"+cold.Tag)
	if r.status != 503 || !bytes.Contains(r.body, []byte("probes it")) {
		t.Errorf("with the breaker open: %d %s", r.status, r.body)
	}
	if time.Since(start) > time.Second {
		t.Errorf("a request with the breaker open took %v", time.Since(start))
	}
	e.clock.Advance(2 * time.Minute)
	e.hub.Up()
	if _, err := e.pull(t, cold); err != nil {
		t.Fatalf("first pull after the upstream is back: %v", err)
	}
	if e.up.Health().Down {
		t.Fatal("still down after a successful probe")
	}
}

// TestBreakerDeadCDN: a CDN host that fails opens its own breaker; the
// registry's manifests and tags keep working and the upstream is not
// reported down.
func TestBreakerDeadCDN(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.hub.Fail(testenv.KindCDN, 503)
	img := e.imgs.Single
	if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag); r.status != 200 {
		t.Fatalf("manifest: %d", r.status)
	}
	for range 4 {
		for _, l := range img.Blobs() {
			if r := e.do(t, "GET", "/v2/"+img.Repo+"/blobs/"+string(l.Digest)); r.status == 200 && r.err == nil {
				t.Fatalf("blob served with its CDN failing")
			}
		}
	}
	h := e.up.Health()
	cdnOpen := false
	for _, b := range h.Breakers {
		if b.Open && b.Scope != upstream.ScopeManifests && b.Scope != upstream.ScopeBlobs && b.Scope != upstream.ScopeToken {
			cdnOpen = true
		}
	}
	if !cdnOpen || h.Down || breakerOpen(h, upstream.ScopeManifests) {
		t.Fatalf("breakers with a dead CDN: down=%v %+v", h.Down, h.Breakers)
	}
	other := e.imgs.ManifestList
	if r := e.do(t, "GET", "/v2/"+other.Repo+"/manifests/"+other.Tag); r.status != 200 {
		t.Fatalf("cold manifest with a dead CDN: %d %s", r.status, r.body)
	}
	if r := e.do(t, "GET", "/v2/"+other.Repo+"/tags/list"); r.status != 200 {
		t.Fatalf("tag list with a dead CDN: %d %s", r.status, r.body)
	}
}
