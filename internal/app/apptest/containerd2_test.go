package apptest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// TestContainerd2ParallelPull: containerd 2.x (built by
// .ci/build-containerd) with the transfer service's parallel layer fetch
// on (8 MiB and 32 MiB chunks, 3 in flight) pulls a cold image with a
// 64 MiB layer through regcache from the Docker Hub stand-in, throttled
// per connection: the image's digest is the upstream's, regcache fills the
// layer over several range requests, and the stand-in sends the layer's
// bytes about once (at most 1.05 times), for one puller and for three at
// once. The same pull direct from the stand-in shows the parallel ranges
// are on, and gives the time the one through regcache is compared with
// (logged, not asserted: the machine is shared).
func TestContainerd2ParallelPull(t *testing.T) {
	const size = 64 << 20
	hub, img, layerRanges := throttledLayer(t, size)
	layer := string(img.Layers[0].Digest)
	for _, chunk := range []int64{8 << 20, 32 << 20} {
		t.Run(fmt.Sprintf("%d MiB chunks", chunk>>20), func(t *testing.T) {
			opts := testenv.Containerd2Options{FetchBuffer: chunk, MaxDownloads: 3}
			// Direct, once: the reference time, and proof the ranges are parallel.
			c := testenv.StartContainerd2(t, opts)
			c.Hosts(t, hub.Host, "http://"+hub.Host, "")
			hub.ResetCounters()
			began := time.Now()
			pullImage(t, c, hub.Host+"/"+img.Repo+":"+img.Tag, string(img.Digest))
			direct := time.Since(began)
			if n := layerRanges(); n < int(size/chunk) {
				t.Fatalf("containerd fetched the layer direct with %d range requests: the parallel fetch is not on", n)
			}
			t.Logf("direct: %s, %.3f × the layer's bytes, %d ranges", direct.Round(time.Millisecond), float64(hub.BlobBytes(layer))/size, layerRanges())
			for _, pullers := range []int{1, 3} {
				t.Run(fmt.Sprintf("%d pullers", pullers), func(t *testing.T) {
					throughRegcache(t, hub, img, opts, pullers, direct, layerRanges)
				})
			}
		})
	}
}

// throughRegcache pulls img with pullers containerds at once through a
// cold regcache and checks the bytes the stand-in sent for its layer.
func throughRegcache(t *testing.T, hub *testenv.Hub, img testenv.Image, opts testenv.Containerd2Options, pullers int, direct time.Duration, layerRanges func() int) {
	layer, size := string(img.Layers[0].Digest), img.Layers[0].Size
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := fmt.Sprintf("upstreams:\n  - name: docker.io\n    url: %s\n", hub.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	m := apptest.Start(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_PREFETCH": "false"})
	var cs []*testenv.Containerd
	for range pullers {
		c := testenv.StartContainerd2(t, opts)
		c.Hosts(t, "docker.io", "https://registry-1.docker.io", m.URL)
		cs = append(cs, c)
	}
	hub.ResetCounters()
	began := time.Now()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { pullImage(t, c, "docker.io/"+img.Repo+":"+img.Tag, string(img.Digest)) })
	}
	wg.Wait()
	took := time.Since(began)
	got := hub.BlobBytes(layer)
	t.Logf("%d puller(s) through regcache: %s (%.2f × direct), the stand-in sent %.3f × the layer's bytes in %d ranges",
		pullers, took.Round(time.Millisecond), took.Seconds()/direct.Seconds(), float64(got)/float64(size), layerRanges())
	if got > size*105/100 {
		t.Errorf("the stand-in sent %d bytes of the %d-byte layer (%.2f ×), want at most 1.05 ×", got, size, float64(got)/float64(size))
	}
	if n := layerRanges(); n < 2 {
		t.Errorf("regcache fetched the layer with %d range requests: not over several connections", n)
	}
	if n := strings.Count(m.Log(), `"msg":"blob stream cut short"`); n > 0 {
		t.Errorf("%d chunks closed on purpose logged as \"blob stream cut short\"", n)
	}
}

// pullImage pulls ref with ctr (the transfer service) and checks the
// image's digest.
func pullImage(t *testing.T, c *testenv.Containerd, ref, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if out, err := c.Pull(ctx, ref); err != nil {
		t.Errorf("ctr pull %s: %v\n%s\n%s", ref, err, out, c.Log())
		return
	}
	out, err := c.Ctr(ctx, "images", "ls")
	if err != nil {
		t.Error(err)
		return
	}
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == ref {
			if f[2] != want {
				t.Errorf("ctr %s: digest %s, upstream %s", ref, f[2], want)
			}
			return
		}
	}
	t.Errorf("%s not in ctr images ls:\n%s", ref, out)
}

// throttledLayer is the stand-in with one image of a size-byte layer, its
// blobs sent at 8 MiB/s per connection (as a CDN edge limits one
// connection), and a count of the range requests for the layer. The
// registry host serves the bytes itself: its CDN host differs by port
// only, and containerd 2.x (Go's redirect rule compares host names) would
// forward the registry token there, which the CDN refuses as Docker Hub's
// does.
func throttledLayer(t *testing.T, size int64) (*testenv.Hub, testenv.Image, func() int) {
	t.Helper()
	hub := testenv.NewHub(t)
	img := *hub.Seed(t, testenv.WithBigImage(size)).Big
	layer := string(img.Layers[0].Digest)
	hub.SetFault(testenv.AllBlobs, testenv.Throttle(8<<20))
	hub.SetRedirect(false)
	ranges := func() int {
		n := 0
		for _, r := range hub.Requests() {
			if r.Ref == layer && r.Kind == testenv.KindBlob && r.Method == "GET" && r.Range != "" {
				n++
			}
		}
		return n
	}
	return hub, img, ranges
}
