package app

import (
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestEvictBySize: the cap holds: pulling past storage.max_size with fresh
// tags evicts at once (no waiting for the minute's pass), least recently
// used first, down under the cap; the image pulled last is served from
// cache; with the upstream down the cap still wins, and the log names the
// tags that lost their offline copy.
func TestEvictBySize(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithTenLayerImage(10<<20))
	m := startMirrorLogged(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_MAX_SIZE": "4MiB", "REGCACHE_PREFETCH": "false", "REGCACHE_FRESHNESS": "10m"})
	img := *imgs.TenLayer
	pullCrane(t, m.Host+"/"+img.Repo+":"+img.Tag)
	single := imgs.Single
	pullCrane(t, m.Host+"/"+single.Repo+":"+single.Tag)
	stored := func() int64 {
		var total int64
		for _, im := range []testenv.Image{img, single} {
			for _, b := range im.Blobs() {
				if _, err := m.App.store.Stat(t.Context(), b.Digest); err == nil {
					total += b.Size
				}
			}
		}
		return total
	}
	deadline := time.Now().Add(5 * time.Second)
	for stored() > 4<<20 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if total := stored(); total > 4<<20 {
		t.Fatalf("%d bytes stored 5 s after pulling past a 4 MiB cap with fresh tags", total)
	}
	hub.ResetCounters()
	pullCrane(t, m.Host+"/"+single.Repo+":"+single.Tag)
	if n := hub.Count("GET", testenv.KindBlob) + hub.Count("GET", testenv.KindCDN); n != 0 {
		t.Errorf("the image pulled last fetched %d blobs again", n)
	}
	// The upstream goes down: its tags' content is the only copy, but the
	// cap wins, and the log says which tags lost it.
	hub.Down()
	for range 6 { // trip the breaker
		m.App.upstreams[0].Client.Ping(t.Context())
	}
	if !m.App.upstreams[0].Client.Health().Down {
		t.Fatal("upstream not marked down")
	}
	m.App.evictor.SetMaxSize(1)
	if n, _, err := m.App.evictor.Evict(t.Context()); n == 0 || err != nil {
		t.Fatalf("evicted %d blobs over a 1-byte cap (%v)", n, err)
	}
	if !strings.Contains(m.log(), "lost their offline copy") || !strings.Contains(m.log(), single.Repo+":"+single.Tag) {
		t.Errorf("the log does not name the tags that lost their offline copy:\n%s", m.log())
	}
}

// TestMaxSizePercent: storage.max_size as a share of the data directory's
// file system becomes a byte cap at start.
func TestMaxSizePercent(t *testing.T) {
	hub := testenv.NewHub(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_MAX_SIZE": "50%"})
	if m.App.config().Storage.MaxSize <= 0 {
		t.Fatalf("storage.max_size 50%% gave a cap of %d bytes", m.App.config().Storage.MaxSize)
	}
}

// TestManifestPullsKeepLayers: an image whose clients have its layers and
// only pull its manifest stays in the LRU order as in use: over the cap,
// an image not pulled since goes first.
func TestManifestPullsKeepLayers(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithTenLayerImage(2<<20))
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_MAX_SIZE": "1GiB", "REGCACHE_PREFETCH": "false"})
	used, other := imgs.Single, *imgs.TenLayer
	pullCrane(t, m.Host+"/"+used.Repo+":"+used.Tag)
	time.Sleep(10 * time.Millisecond)
	pullCrane(t, m.Host+"/"+other.Repo+":"+other.Tag)
	// Every fill committed (a commit stamps its blob's access time; one
	// landing after the manifest pull below would make the other image
	// the more recently used).
	waitBlobs(t, m.App, int64(len(used.Blobs())+len(other.Blobs())))
	time.Sleep(10 * time.Millisecond)
	// Nodes that have the layers pull only the manifest.
	if status, _, err := get(t, "http://"+m.Host+"/v2/"+used.Repo+"/manifests/"+used.Tag); status != 200 || err != nil {
		t.Fatalf("manifest: %d %v", status, err)
	}
	m.App.evictor.SetMaxSize(1 << 20) // the other image (2 MiB) cannot stay
	if _, _, err := m.App.evictor.Evict(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, b := range used.Blobs() {
		if _, err := m.App.store.Stat(t.Context(), b.Digest); err != nil {
			t.Errorf("a layer of the image in use was evicted: %s", b.Digest)
		}
	}
}
