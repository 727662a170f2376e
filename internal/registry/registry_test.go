package registry

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

func TestReadAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	blob := img.Layers[0]
	tests := []struct {
		name, method, path string
		hdr                []string
		status             int
		code               string
		check              func(t *testing.T, r response)
	}{
		{name: "base", method: "GET", path: "/v2/", status: 200, check: func(t *testing.T, r response) {
			if r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Error("no API version header")
			}
		}},
		{name: "manifest by tag", method: "GET", path: "/v2/" + img.Repo + "/manifests/" + img.Tag, status: 200, check: func(t *testing.T, r response) {
			if r.header.Get("Content-Type") != img.MediaType || r.header.Get("Content-Length") == "" || digest.FromBytes(r.body) != img.Digest {
				t.Errorf("headers %v", r.header)
			}
		}},
		{name: "head manifest", method: "HEAD", path: "/v2/" + img.Repo + "/manifests/" + string(img.Digest), status: 200, check: func(t *testing.T, r response) {
			if r.header.Get("Docker-Content-Digest") != string(img.Digest) || len(r.body) != 0 {
				t.Errorf("HEAD: %v %d bytes", r.header, len(r.body))
			}
		}},
		{name: "blob", method: "GET", path: "/v2/" + img.Repo + "/blobs/" + string(blob.Digest), status: 200},
		{name: "blob range", method: "GET", path: "/v2/" + img.Repo + "/blobs/" + string(blob.Digest), hdr: []string{"Range", "bytes=1-10"}, status: 206, check: func(t *testing.T, r response) {
			if len(r.body) != 10 || !strings.HasPrefix(r.header.Get("Content-Range"), "bytes 1-10/") {
				t.Errorf("range: %d bytes, %q", len(r.body), r.header.Get("Content-Range"))
			}
		}},
		{name: "blob range beyond end", method: "GET", path: "/v2/" + img.Repo + "/blobs/" + string(blob.Digest), hdr: []string{"Range", "bytes=999999999-"}, status: 416},
		{name: "malformed range", method: "GET", path: "/v2/" + img.Repo + "/blobs/" + string(blob.Digest), hdr: []string{"Range", "bytes=x-y"}, status: 416},
		{name: "unknown tag", method: "GET", path: "/v2/" + img.Repo + "/manifests/nope", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "unknown blob", method: "GET", path: "/v2/" + img.Repo + "/blobs/" + string(digest.FromString("nope")), status: 404, code: "BLOB_UNKNOWN"},
		{name: "bad name", method: "GET", path: "/v2/Bad/manifests/x", status: 400, code: "NAME_INVALID"},
		{name: "bad digest", method: "GET", path: "/v2/a/blobs/sha256:123", status: 400, code: "DIGEST_INVALID"},
		{name: "bad tag", method: "GET", path: "/v2/a/manifests/-x", status: 400, code: "MANIFEST_INVALID"},
		{name: "push", method: "POST", path: "/v2/a/blobs/uploads/", status: 405, code: "UNSUPPORTED"},
		{name: "put manifest", method: "PUT", path: "/v2/a/manifests/x", status: 405, code: "UNSUPPORTED"},
		{name: "delete", method: "DELETE", path: "/v2/a/blobs/" + string(blob.Digest), status: 405, code: "UNSUPPORTED"},
		{name: "unknown registry prefix", method: "GET", path: "/v2/quay.io/x/manifests/y", status: 404, code: "NAME_UNKNOWN"},
		{name: "unknown ns", method: "GET", path: "/v2/x/manifests/y?ns=quay.io", status: 404, code: "NAME_UNKNOWN"},
		{name: "tags list", method: "GET", path: "/v2/" + img.Repo + "/tags/list?n=1", status: 200, check: func(t *testing.T, r response) {
			if !strings.Contains(string(r.body), img.Tag) {
				t.Errorf("tags: %s", r.body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, tt.hdr...)
			if r.err != nil || r.status != tt.status {
				t.Fatalf("%s %s = %d %v %s, want %d", tt.method, tt.path, r.status, r.err, r.body, tt.status)
			}
			if tt.code != "" {
				if got := errorCode(r.body); got != tt.code && tt.method != "HEAD" {
					t.Errorf("code %q, want %q (%s)", got, tt.code, r.body)
				}
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

// TestUpstreamEconomy counts what 100 pulls of a multi-arch tag cost at the
// upstream: nothing after the first within the freshness window; one HEAD
// and no manifest GET per pull after it.
func TestUpstreamEconomy(t *testing.T) {
	e := newEnv(t, envOptions{freshness: time.Minute})
	img := e.imgs.ManifestList
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	e.hub.ResetCounters()
	for range 100 {
		if _, err := e.pull(t, img); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.hub.Requests()); n != 0 {
		t.Errorf("100 warm pulls within the freshness window made %d upstream requests, want 0", n)
	}
	for range 100 {
		e.clock.Advance(2 * time.Minute)
		if _, err := e.pull(t, img); err != nil {
			t.Fatal(err)
		}
	}
	heads, gets := e.hub.Count("HEAD", testenv.KindManifest), e.hub.Count("GET", testenv.KindManifest)
	if heads != 100 || gets != 0 {
		t.Errorf("100 pulls after the window: %d manifest HEADs, %d GETs; want 100 and 0", heads, gets)
	}
	if n := e.hub.TokenRequests(); n > 1 {
		t.Errorf("%d token requests, want at most 1", n)
	}
}

// TestOutageLongerThanAnyTTL: with the upstream down for a thousand hours,
// every cached tag and digest still pulls, and the breaker answers from
// cache without trying the upstream each time.
func TestOutageLongerThanAnyTTL(t *testing.T) {
	e := newEnv(t, envOptions{})
	want := map[string]string{}
	for _, img := range []testenv.Image{e.imgs.Single, e.imgs.ManifestList, e.imgs.OCIIndex} {
		d, err := e.pull(t, img)
		if err != nil {
			t.Fatal(err)
		}
		want[img.Repo] = d
	}
	e.hub.Down()
	for range 10 {
		e.clock.Advance(100 * time.Hour)
		for _, img := range []testenv.Image{e.imgs.Single, e.imgs.ManifestList, e.imgs.OCIIndex} {
			d, err := e.pull(t, img)
			if err != nil {
				t.Fatalf("after the outage began: %v", err)
			}
			if d != want[img.Repo] {
				t.Fatalf("digest changed: %s", d)
			}
		}
	}
	if h := e.up.Health(); !h.Down {
		t.Error("upstream not marked down after repeated failures")
	}
	// A cold image fails clearly, at once.
	start := time.Now()
	r := e.do(t, "GET", "/v2/library/never-pulled/manifests/latest")
	if r.status != 503 || errorCode(r.body) != "UNAVAILABLE" || !strings.Contains(string(r.body), "docker.io") {
		t.Errorf("cold pull during outage: %d %s", r.status, r.body)
	}
	if time.Since(start) > time.Second {
		t.Errorf("cold pull during outage took %v with the breaker open", time.Since(start))
	}
}

// TestBreakerProbe: a failing upstream is left alone while the breaker is
// open, and one probe after the backoff brings it back.
func TestBreakerProbe(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	e.hub.Fail(testenv.KindManifest, 503)
	e.hub.ResetCounters()
	e.clock.Advance(2 * time.Minute) // past freshness: every pull revalidates
	for range 20 {
		if _, err := e.pull(t, img); err != nil {
			t.Fatal(err)
		}
	}
	// 5 consecutive failed attempts (requests are retried once) open the
	// breaker; the other pulls are answered from cache without asking.
	if tried := e.hub.Count("HEAD", testenv.KindManifest); tried != 5 {
		t.Fatalf("upstream asked %d times for 20 pulls, want 5 (breaker threshold)", tried)
	}
	if !e.up.Health().Down {
		t.Fatal("upstream not reported down")
	}
	e.hub.Fail(testenv.KindManifest, 0)
	e.clock.Advance(10 * time.Minute)
	e.hub.ResetCounters()
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	if e.hub.Count("HEAD", testenv.KindManifest) != 1 || e.up.Health().Down {
		t.Fatalf("probe after backoff: %d HEADs, health %+v", e.hub.Count("HEAD", testenv.KindManifest), e.up.Health())
	}
}

// TestRateLimited: a 429 serves the cached tag, and the upstream is not
// asked again before Retry-After; a cold pull gets 429 with Retry-After.
func TestRateLimited(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	e.hub.SetRetryAfter(30 * time.Second)
	e.hub.Fail(testenv.KindManifest, 429)
	e.hub.ResetCounters()
	e.clock.Advance(2 * time.Minute)
	if _, err := e.pull(t, img); err != nil {
		t.Fatalf("warm pull during 429: %v", err)
	}
	if n := e.hub.Count("", testenv.KindManifest); n != 1 {
		t.Fatalf("first pull after the window: %d manifest requests, want 1", n)
	}
	r := e.do(t, "GET", "/v2/"+e.imgs.OCIIndex.Repo+"/manifests/"+e.imgs.OCIIndex.Tag)
	if r.status != 429 || errorCode(r.body) != "TOOMANYREQUESTS" || r.header.Get("Retry-After") == "" {
		t.Fatalf("cold pull during 429: %d %v %s", r.status, r.header, r.body)
	}
	e.clock.Advance(5 * time.Second)
	for range 5 {
		if _, err := e.pull(t, img); err != nil {
			t.Fatal(err)
		}
	}
	// 429s are held per kind of request: the HEAD that revalidated and
	// the cold GET were each asked once, and nothing again before
	// Retry-After.
	if h, g := e.hub.Count("HEAD", testenv.KindManifest), e.hub.Count("GET", testenv.KindManifest); h != 1 || g != 1 {
		t.Fatalf("upstream asked %d HEADs and %d GETs before Retry-After passed, want 1 and 1", h, g)
	}
	e.hub.Fail(testenv.KindManifest, 0)
	e.clock.Advance(time.Minute)
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	if n := e.hub.Count("HEAD", testenv.KindManifest); n < 2 {
		t.Fatalf("upstream not asked again after Retry-After: %d", n)
	}
}

func TestNegativeCache(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := e.pull(t, e.imgs.Single); err != nil { // learn the upstream's challenge
		t.Fatal(err)
	}
	e.hub.ResetCounters()
	for range 10 {
		if r := e.do(t, "GET", "/v2/library/misspelled/manifests/latest"); r.status != 404 {
			t.Fatalf("status %d", r.status)
		}
	}
	if n := e.hub.Count("GET", testenv.KindManifest); n != 1 {
		t.Errorf("10 pulls of a missing tag made %d upstream GETs, want 1", n)
	}
	e.clock.Advance(time.Minute)
	e.do(t, "GET", "/v2/library/misspelled/manifests/latest")
	if n := e.hub.Count("GET", testenv.KindManifest); n != 2 {
		t.Errorf("after the negative TTL: %d GETs, want 2", n)
	}
}

// TestFaults runs each upstream fault against warm and cold content and
// checks the answer and that nothing wrong is cached.
func TestFaults(t *testing.T) {
	type fault struct {
		name      string
		apply     func(e *env, blob string)
		coldOK    bool   // a cold pull still succeeds (the fault is recovered)
		coldCode  string // else the error code of the manifest or blob
		blobFault bool
	}
	faults := []fault{
		{name: "down", apply: func(e *env, _ string) { e.hub.Down() }, coldCode: "UNAVAILABLE"},
		{name: "503", apply: func(e *env, _ string) { e.hub.Fail(testenv.KindManifest, 503); e.hub.Fail(testenv.KindBlob, 503) }, coldCode: "UNAVAILABLE"},
		{name: "timeout", apply: func(e *env, _ string) { e.hub.SetFault(testenv.AllBlobs, testenv.Delay(2*time.Second)) }, coldCode: "UNAVAILABLE", blobFault: true},
		{name: "reset once", apply: func(e *env, _ string) { e.hub.SetFault(testenv.AllBlobs, testenv.Reset(100), testenv.Times(1)) }, coldOK: true, blobFault: true},
		{name: "truncate once", apply: func(e *env, _ string) { e.hub.SetFault(testenv.AllBlobs, testenv.Truncate(100), testenv.Times(1)) }, coldOK: true, blobFault: true},
		{name: "corrupt", apply: func(e *env, _ string) { e.hub.SetFault(testenv.AllBlobs, testenv.Corrupt()) }, blobFault: true},
		{name: "token endpoint down", apply: func(e *env, _ string) { e.hub.Fail(testenv.KindToken, 503); e.up.ResetTokens() }, coldCode: "UNAVAILABLE"},
		{name: "429", apply: func(e *env, _ string) { e.hub.Fail(testenv.KindManifest, 429) }, coldCode: "TOOMANYREQUESTS"},
		{name: "401 broken credential", apply: func(e *env, _ string) { e.hub.SetCredentials("me", "rotated"); e.up.ResetTokens() }, coldCode: "DENIED"},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			warm, cold := e.imgs.ManifestList, e.imgs.Single
			want, err := e.pull(t, warm)
			if err != nil {
				t.Fatal(err)
			}
			f.apply(e, "")
			e.clock.Advance(2 * time.Minute) // past freshness: the tag is revalidated
			got, err := e.pull(t, warm)
			if err != nil || got != want {
				t.Fatalf("warm pull: %v (digest %s, want %s)", err, got, want)
			}
			_, err = e.pull(t, cold)
			switch {
			case f.coldOK && err != nil:
				t.Fatalf("cold pull should recover: %v", err)
			case !f.coldOK && err == nil:
				t.Fatalf("cold pull succeeded under fault %s", f.name)
			case !f.coldOK && f.coldCode != "" && !strings.Contains(err.Error(), f.coldCode):
				t.Fatalf("cold pull error %v, want code %s", err, f.coldCode)
			}
			// Nothing wrong is cached: every committed blob hashes right.
			e.store.Walk(t.Context(), func(d digest.Digest, _ int64) error {
				if err := e.store.Verify(t.Context(), d); err != nil {
					t.Errorf("cached %s is wrong: %v", d, err)
				}
				return nil
			})
			if f.name == "corrupt" {
				for _, b := range cold.Layers {
					if e.storeHolds(t, b.Digest) {
						t.Errorf("corrupt layer %s was cached", b.Digest)
					}
				}
			}
		})
	}
}

// TestPrefetch: one manifest GET of a cold ten-layer image makes the
// upstream see every layer requested, each once, with no further client
// request; then the client's own layer pulls are correct.
func TestPrefetch(t *testing.T) {
	e := newEnv(t, envOptions{prefetch: true, seed: []testenv.SeedOption{testenv.WithTenLayerImage(10 << 20)}})
	img := *e.imgs.TenLayer
	e.hub.ResetCounters()
	if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag); r.status != 200 {
		t.Fatalf("manifest: %d", r.status)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, b := range img.Blobs() {
		for !e.storeHolds(t, b.Digest) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !e.storeHolds(t, b.Digest) {
			t.Fatalf("blob %s not prefetched", b.Digest)
		}
	}
	for _, b := range img.Blobs() {
		n := e.hub.CountRef("GET", testenv.KindBlob, string(b.Digest))
		if n != 1 {
			t.Errorf("blob %s fetched %d times, want 1", b.Digest, n)
		}
	}
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
}

var _ = http.StatusOK

// TestCoalescing: concurrent identical manifest requests and concurrent
// revalidations of one tag each reach the upstream once.
func TestCoalescing(t *testing.T) {
	e := newEnv(t, envOptions{})
	// learn the challenge and the token first, so counts are of real requests
	if _, err := e.pull(t, e.imgs.OCIIndex); err != nil {
		t.Fatal(err)
	}
	img := e.imgs.Single
	e.hub.ResetCounters()
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag) })
	}
	wg.Wait()
	if n := e.hub.Count("GET", testenv.KindManifest); n != 1 {
		t.Errorf("20 concurrent cold manifest GETs reached the upstream %d times, want 1", n)
	}
	e.clock.Advance(2 * time.Minute)
	e.hub.ResetCounters()
	for range 20 {
		wg.Go(func() { e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag) })
	}
	wg.Wait()
	if n := e.hub.Count("HEAD", testenv.KindManifest); n != 1 {
		t.Errorf("20 concurrent revalidations reached the upstream %d times, want 1", n)
	}
}
