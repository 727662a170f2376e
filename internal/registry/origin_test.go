package registry

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// twoUpstreams serves docker.io (e's Hub stand-in) and a second upstream
// named b.example at bURL, on e's store, index and fills.
func twoUpstreams(t *testing.T, e *env, bURL string) *httptest.Server {
	t.Helper()
	b, err := upstream.New("b.example", bURL, auth.Credentials{}, upstream.WithRetry(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	svc := mirror.New(e.store, e.index, e.fills, []*mirror.Upstream{{Name: "docker.io", Client: e.up}, {Name: "b.example", Client: b}},
		mirror.WithClock(e.clock.Now), mirror.WithPrefetch(false, 1))
	ts := httptest.NewServer(New(svc).Handler())
	t.Cleanup(func() { ts.Close(); svc.Close() })
	return ts
}

// TestDigestOfOneUpstreamNotUnlockedByAnother: content fetched from
// docker.io is not served under another upstream's name on that
// upstream's word (a HEAD 200 for any digest, a manifest of its own that
// names the digest), only if it serves the same bytes itself.
func TestDigestOfOneUpstreamNotUnlockedByAnother(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	if _, err := e.pull(t, img); err != nil { // docker.io's content is cached
		t.Fatal(err)
	}
	layer := img.Layers[0].Digest
	// A liar: HEAD 200 for every digest; GETs answer other bytes; its own
	// manifest "latest" names docker.io's layer.
	own := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`,
		img.Config.Digest, img.Config.Size, layer, img.Layers[0].Size)
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/latest"):
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", digest.FromString(own).String())
			w.Write([]byte(own))
		case r.Method == http.MethodHead:
			d := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
			w.Header().Set("Docker-Content-Digest", d)
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Content-Length", "100")
		default:
			w.Write([]byte("not the bytes you are looking for"))
		}
	}))
	defer liar.Close()
	ts := twoUpstreams(t, e, liar.URL)
	get := func(path string) (int, string) {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Docker-Content-Digest")
	}
	for _, p := range []string{
		"/v2/b.example/public/x/manifests/" + string(img.Digest),
		"/v2/b.example/public/x/blobs/" + string(img.Config.Digest),
		"/v2/b.example/public/x/blobs/" + string(layer),
	} {
		if status, _ := get(p); status == 200 {
			t.Errorf("GET %s: 200: docker.io's content unlocked by another upstream's HEAD", p)
		}
	}
	// Its own manifest naming docker.io's layer: the manifest is its own
	// bytes, the layer is not.
	if status, _ := get("/v2/b.example/public/y/manifests/latest"); status != 200 {
		t.Fatalf("the liar's own manifest: %d", status)
	}
	if status, _ := get("/v2/b.example/public/y/blobs/" + string(layer)); status == 200 {
		t.Error("docker.io's layer unlocked by a manifest of another upstream that names it")
	}
}

// TestDigestConfirmedBySameBytes: an upstream that serves the same bytes
// (a real mirror of the same content) gets content cached from another
// upstream after one verifying GET, and then from the cache.
func TestDigestConfirmedBySameBytes(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	twin := testenv.NewHub(t)
	twin.SetAuth(false)
	if got := twin.Seed(t); got.Single.Digest != img.Digest {
		t.Fatal("the twin seeded other content")
	}
	ts := twoUpstreams(t, e, twin.URL)
	for range 2 {
		for _, d := range []digest.Digest{img.Config.Digest, img.Layers[0].Digest} {
			resp, err := http.Get(ts.URL + "/v2/b.example/" + img.Repo + "/blobs/" + string(d))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("blob %s under an upstream with the same bytes: %d", d, resp.StatusCode)
			}
		}
	}
	if n := twin.Count("GET", testenv.KindBlob) + twin.Count("GET", testenv.KindCDN); n > 2*2 {
		t.Errorf("the twin served %d blob GETs for 2 blobs asked twice; want one verifying GET each", n)
	}
}
