package registry

import (
	"bytes"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestRangeOfBadFill: a partial range of a blob being filled is sent as
// its bytes arrive (a part of a blob cannot be verified by the mirror; the
// lazy-pulling client checks its chunks), so a range before the upstream's
// corruption completes with the upstream's bytes; but a whole-blob answer
// of the same corrupt fill never completes, and nothing is cached.
func TestRangeOfBadFill(t *testing.T) {
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithTenLayerImage(40 << 20)}})
	img := *e.imgs.TenLayer
	layer := img.Layers[0]
	good := e.hubBlobOf(t, img.Repo, string(layer.Digest))
	if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag); r.status != 200 {
		t.Fatal(r.status)
	}
	e.hub.SetFault(string(layer.Digest), testenv.Corrupt(), testenv.Throttle(8<<20))
	path := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
	r := e.do(t, "GET", path, "Range", "bytes=0-20")
	if r.err != nil || r.status != 206 || !bytes.Equal(r.body, good[:21]) {
		t.Fatalf("range before the corruption: %d %v, %d bytes", r.status, r.err, len(r.body))
	}
	req, _ := http.NewRequest("GET", e.ts.URL+path, nil)
	resp, err := e.ts.Client().Do(req)
	if err == nil { // else the connection was cut before the headers left the buffer: a failed transfer too
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if rerr == nil {
			t.Fatalf("the whole of a blob that fails verification completed: %d, %d bytes", resp.StatusCode, len(body))
		}
	}
	if e.storeHolds(t, layer.Digest) {
		t.Fatal("corrupt layer cached")
	}
}

// TestSharedManifestServedStale: a repository that gets a manifest already
// stored for another repository holds its blobs too, so they are served
// from cache during an outage.
func TestSharedManifestServedStale(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.hub.Seed(t, testenv.WithPrefix("team/")) // same content, another repository
	img := e.imgs.Single
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	team := img
	team.Repo = "team/single"
	if r := e.do(t, "GET", "/v2/team/single/manifests/"+string(img.Digest)); r.status != 200 {
		t.Fatalf("team manifest by digest: %d %s", r.status, r.body)
	}
	e.hub.Down()
	e.clock.Advance(time.Hour)
	for _, b := range img.Blobs() {
		if r := e.do(t, "GET", "/v2/team/single/blobs/"+string(b.Digest)); r.status != 200 {
			t.Errorf("blob %s of team/single during the outage: %d %s", b.Digest, r.status, r.body)
		}
	}
}

// TestListingQuery: only n and last reach the upstream and the cache key;
// a bad n is 400; a 416 keeps Content-Range.
func TestListingQuery(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	for i := range 5 {
		r := e.do(t, "GET", "/v2/"+img.Repo+"/tags/list?junk="+string(rune('a'+i)))
		if r.status != 200 {
			t.Fatalf("tags: %d", r.status)
		}
	}
	if n := e.hub.Count("GET", testenv.KindTags); n > 2 { // 1, plus a possible auth challenge
		t.Errorf("junk parameters made %d upstream tag listings", n)
	}
	if r := e.do(t, "GET", "/v2/"+img.Repo+"/tags/list?n=abc"); r.status != 400 || errorCode(r.body) != "PAGINATION_NUMBER_INVALID" {
		t.Errorf("bad n: %d %s", r.status, r.body)
	}
	blob := img.Layers[0]
	e.pull(t, img)
	r := e.do(t, "GET", "/v2/"+img.Repo+"/blobs/"+string(blob.Digest), "Range", "bytes=99999999-")
	if r.status != 416 || r.header.Get("Content-Range") == "" {
		t.Errorf("416: %d, Content-Range %q", r.status, r.header.Get("Content-Range"))
	}
}
