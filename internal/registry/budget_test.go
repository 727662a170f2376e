package registry

import (
	"strconv"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/testenv"
)

// TestBudgetReserve: requests marked X-Regcache-Background: 1 (regcache
// warm) spend counted pulls only while more than budget_reserve are left;
// then they get 429 with a Retry-After and a message saying the reserve is
// kept for other clients, without a request to the upstream. The same
// manifest without the header is still pulled, and cached tags are served
// to background requests too.
func TestBudgetReserve(t *testing.T) {
	e := newEnv(t, envOptions{reserve: 3})
	e.hub.SetRateLimit(6, 6)
	bg := []string{mirror.BackgroundHeader, "1"}
	imgs := []testenv.Image{e.imgs.Single, e.imgs.ManifestList, e.imgs.OCIIndex}
	for _, img := range imgs { // 6 → 3 left: each is allowed, the last reaches the reserve
		if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag, bg...); r.status != 200 {
			t.Fatalf("background pull of %s with budget left: %d %s", img.Tag, r.status, r.body)
		}
	}
	if got := e.hub.RateLimitRemaining(); got != 3 {
		t.Fatalf("the stand-in has %d pulls left, want 3", got)
	}
	child := e.imgs.ManifestList.Platforms[0]
	path := "/v2/" + child.Repo + "/manifests/" + string(child.Digest)
	gets := e.hub.Count("GET", testenv.KindManifest)
	r := e.do(t, "GET", path, bg...)
	if r.status != 429 || errorCode(r.body) != "TOOMANYREQUESTS" {
		t.Fatalf("background pull at the reserve: %d %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), "kept for other clients") {
		t.Errorf("the 429 does not say why: %s", r.body)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 21600 {
		t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
	}
	if n := e.hub.Count("GET", testenv.KindManifest); n != gets {
		t.Errorf("the refused background pull reached the upstream (%d manifest GETs, was %d)", n, gets)
	}
	if got := e.hub.RateLimitRemaining(); got != 3 {
		t.Errorf("the reserve was spent: %d left", got)
	}
	// A client pulling for real gets it, spending the reserve.
	if r := e.do(t, "GET", path); r.status != 200 {
		t.Fatalf("plain pull at the reserve: %d %s", r.status, r.body)
	}
	// Cached content costs no pull: background requests still get it.
	for _, img := range imgs {
		if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag, bg...); r.status != 200 {
			t.Errorf("cached %s to a background request: %d %s", img.Tag, r.status, r.body)
		}
	}
	if r := e.do(t, "GET", path, bg...); r.status != 200 {
		t.Errorf("cached child to a background request: %d", r.status)
	}
}
