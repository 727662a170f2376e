package cli

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex/redisindex"
	"github.com/regcache/regcache/internal/testenv"
)

// manifestGet GETs a tag's manifest from a mirror and checks its digest.
func manifestGet(t *testing.T, base string, img testenv.Image) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v2/"+img.Repo+"/manifests/"+img.Tag, nil)
	req.Header.Set("Accept", img.MediaType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || digest.FromBytes(body) != img.Digest {
		t.Errorf("GET %s:%s: %s", img.Repo, img.Tag, resp.Status)
	}
}

// manifestAsks counts the manifest requests the upstream answered (a
// token challenge's 401 before an answer is not another request).
func manifestAsks(hub *testenv.Hub) (heads, gets int) {
	for _, r := range hub.Requests() {
		switch {
		case r.Kind != testenv.KindManifest || r.Status == http.StatusUnauthorized:
		case r.Method == http.MethodHead:
			heads++
		case r.Method == http.MethodGet:
			gets++
		}
	}
	return heads, gets
}

// TestCacheInvalidate: `regcache cache invalidate` on a running mirror,
// through its admin API (refused without the admin token): the next pull
// of an immutable tag, which never asks the upstream, asks it once (a
// HEAD); a repository without a tag invalidates all its tags; names that
// match nothing are errors.
func TestCacheInvalidate(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	cfg := writeConfig(t, "rules:\n  - match: docker.io/library/*:latest\n    immutable: true\n")
	m := apptest.Start(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_ADMIN_TOKEN": "s3cret-admin-token-1", "REGCACHE_FRESHNESS": "0s", "REGCACHE_PREFETCH": "false"})
	invalidate := func(args ...string) (string, error) {
		return runCLI(t, append(append([]string{"cache", "invalidate"}, args...), "--admin", m.Admin, "--admin-token", "s3cret-admin-token-1")...)
	}
	manifestGet(t, m.URL, imgs.Single)
	manifestGet(t, m.URL, imgs.ManifestList)
	hub.ResetCounters()
	manifestGet(t, m.URL, imgs.Single)
	if h, g := manifestAsks(hub); h+g != 0 {
		t.Fatalf("an immutable tag asked the upstream: %d HEADs, %d GETs", h, g)
	}
	if _, err := runCLI(t, "cache", "invalidate", "single", "--admin", m.Admin); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("invalidate without the admin token: %v", err)
	}
	out, err := invalidate("single:latest")
	if err != nil || !strings.Contains(out, "invalidated docker.io/library/single:latest") {
		t.Fatalf("invalidate: %v\n%s", err, out)
	}
	for range 2 { // asked once, then immutable again
		manifestGet(t, m.URL, imgs.Single)
	}
	if h, g := manifestAsks(hub); h != 1 || g != 0 {
		t.Errorf("after invalidate, two pulls asked the upstream %d HEADs and %d GETs, want 1 and 0", h, g)
	}
	hub.ResetCounters()
	if out, err := invalidate("docker.io/multi"); err != nil || !strings.Contains(out, "invalidated docker.io/library/multi:latest") {
		t.Errorf("invalidate a repository: %v\n%s", err, out)
	}
	manifestGet(t, m.URL, imgs.ManifestList)
	if h, g := manifestAsks(hub); h != 1 || g != 0 {
		t.Errorf("after invalidating the repository, a pull asked %d HEADs and %d GETs, want 1 and 0", h, g)
	}
	for _, bad := range []string{"nosuch:1", "nosuch", "single@" + string(imgs.Single.Digest)} {
		if _, err := invalidate(bad); err == nil {
			t.Errorf("invalidate %s: no error", bad)
		}
	}
}

// TestClusterInvalidate: three replicas with a long freshness each hold a
// tag in memory; the tag is invalidated in the shared index (as the admin
// API of any replica does; none of them is told), and within a second
// every replica asks again: 30 pulls over the three cost one HEAD
// upstream, and the pulls after it none. A 16 MiB layer of another tag,
// streamed from a throttled upstream to a client of every replica while
// that tag is invalidated too, arrives whole and right on each.
func TestClusterInvalidate(t *testing.T) {
	c := newTestCluster(t, 3, "REGCACHE_FRESHNESS=1h")
	imgs := c.hub.Seed(t, testenv.WithBigImage(16<<20))
	img := imgs.Single
	for _, r := range c.replicas {
		manifestGet(t, r.url, img)
		manifestGet(t, r.url, *imgs.Big)
	}
	layer := imgs.Big.Layers[0]
	c.hub.SetFault(string(layer.Digest), testenv.Throttle(4<<20))
	c.hub.ResetCounters()
	streams := make(chan result, len(c.replicas))
	for _, r := range c.replicas {
		go func() { streams <- getBlob(t.Context(), r.url, imgs.Big.Repo, layer.Digest) }()
	}
	ix, err := redisindex.New(t.Context(), c.rdb, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ops := cache.NewOps(nil, ix, cache.OpsConfig{})
	time.Sleep(time.Second) // the layer is on its way to every client
	if res, err := ops.Invalidate(t.Context(), cache.InvalidateRequest{Targets: []cache.RemoveTarget{{Raw: "big", Repo: "big"}}}); err != nil || len(res.Tags) != 1 {
		t.Fatalf("invalidate big: %v %v", res, err)
	}
	res, err := ops.Invalidate(t.Context(), cache.InvalidateRequest{Targets: []cache.RemoveTarget{{Raw: "single:latest", Repo: "single", Tag: "latest"}}})
	if err != nil || len(res.Tags) != 1 {
		t.Fatalf("invalidate: %v %v", res, err)
	}
	for range c.replicas {
		if r := <-streams; !r.right || r.n != layer.Size {
			t.Errorf("a layer streamed while its tag was invalidated: status %d, %d of %d bytes, err %v", r.status, r.n, layer.Size, r.err)
		}
	}
	if n := c.hub.BlobBytes(string(layer.Digest)); n != layer.Size {
		t.Errorf("upstream sent %d bytes of the layer, want one blob (%d)", n, layer.Size)
	}
	c.hub.ResetCounters()
	time.Sleep(1100 * time.Millisecond)
	pulls := func() {
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Go(func() { manifestGet(t, c.replicas[i%3].url, img) })
		}
		wg.Wait()
	}
	pulls()
	if h, g := manifestAsks(c.hub); h != 1 || g != 0 {
		t.Errorf("30 pulls over 3 replicas after invalidating: %d HEADs, %d GETs upstream, want 1 and 0", h, g)
	}
	c.hub.ResetCounters()
	pulls()
	if h, g := manifestAsks(c.hub); h+g != 0 {
		t.Errorf("30 more pulls: %d HEADs, %d GETs upstream, want none", h, g)
	}
}

// TestInvalidateInFlight: `cache invalidate` of a tag (and of its
// repository) while its 32 MiB layer is being streamed does not break the
// stream: a client reading the layer as it is filled from a throttled
// upstream, and one reading it from the cache, each pause with part of
// the body read while the tag is invalidated, then get the whole body,
// right. The content stays; the next pull of the tag asks the upstream
// once (a HEAD) and its layer is a hit.
func TestInvalidateInFlight(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(32<<20))
	big := *imgs.Big
	layer := big.Layers[0]
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_FRESHNESS": "1h", "REGCACHE_PREFETCH": "false"})
	manifestGet(t, m.URL, big) // the tag is cached, its layer is not
	hub.SetFault(string(layer.Digest), testenv.Throttle(8<<20))

	// streamAcross reads part of the layer, invalidates while the rest
	// is in flight, and reads the rest.
	streamAcross := func(what string, invalidate ...string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, m.URL+"/v2/"+big.Repo+"/blobs/"+layer.Digest.String(), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := digest.SHA256.Digester()
		first, err := io.CopyN(h.Hash(), resp.Body, 2<<20)
		if err != nil {
			t.Fatalf("%s: the first bytes: %v", what, err)
		}
		for _, target := range invalidate {
			if out, err := runCLI(t, "cache", "invalidate", target, "--admin", m.Admin); err != nil || !strings.Contains(out, "invalidated docker.io/library/big:latest") {
				t.Fatalf("%s: invalidate %s: %v\n%s", what, target, err, out)
			}
		}
		rest, err := io.Copy(h.Hash(), resp.Body)
		if resp.StatusCode != http.StatusOK || err != nil || first+rest != layer.Size || h.Digest() != layer.Digest {
			t.Errorf("%s, invalidated in flight: %s, %d of %d bytes, err %v, digest right %v", what, resp.Status, first+rest, layer.Size, err, h.Digest() == layer.Digest)
		}
	}
	streamAcross("a client of the running fill", "big:latest", "big")
	if n := hub.BlobBytes(string(layer.Digest)); n != layer.Size {
		t.Errorf("the upstream sent %d bytes of the layer, want %d (one fetch)", n, layer.Size)
	}
	hub.ClearFaults()
	waitIndexed(t, m.App, 1)
	hub.ResetCounters()
	streamAcross("a client of the cached layer", "big:latest")
	manifestGet(t, m.URL, big)
	manifestGet(t, m.URL, big)
	if h, g := manifestAsks(hub); h != 1 || g != 0 {
		t.Errorf("after invalidating, two pulls asked the upstream %d HEADs and %d GETs, want 1 and 0", h, g)
	}
	if res := getBlob(t.Context(), m.URL, big.Repo, layer.Digest); !res.right {
		t.Errorf("the layer after the invalidations: status %d, err %v", res.status, res.err)
	}
	if n := hub.BlobBytes(string(layer.Digest)); n != 0 {
		t.Errorf("the cached layer was fetched again (%d bytes)", n)
	}
}
