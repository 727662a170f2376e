package app

import (
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestEvictBySize: over max_size, least recently used blobs go; with the
// upstream down, the content of its tags is kept.
func TestEvictBySize(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithTenLayerImage(10<<20))
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_MAX_SIZE": "4MiB", "REGCACHE_PREFETCH": "false", "REGCACHE_FRESHNESS": "1ns"})
	img := *imgs.TenLayer
	pullCrane(t, m.Host+"/"+img.Repo+":"+img.Tag)
	// Just pulled (its tag is fresh): in use, kept whatever the size.
	m.App.cfg.Freshness = time.Hour
	if n, _, err := m.App.Evict(t.Context()); n != 0 || err != nil {
		t.Fatalf("evicted %d blobs of a fresh tag (%v)", n, err)
	}
	m.App.cfg.Freshness = time.Nanosecond
	n, freed, err := m.App.Evict(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, b := range img.Blobs() {
		if _, err := m.App.store.Stat(t.Context(), b.Digest); err == nil {
			total += b.Size
		}
	}
	if n == 0 || total > 4<<20 {
		t.Fatalf("evicted %d blobs (%d bytes); %d bytes left, want at most 4 MiB", n, freed, total)
	}
	// The upstream goes down: what is left of its tags is protected.
	hub.Down()
	for range 6 { // trip the breaker
		m.App.upstreams[0].Client.Ping(t.Context())
	}
	if !m.App.upstreams[0].Client.Health().Down {
		t.Fatal("upstream not marked down")
	}
	m.App.cfg.Storage.MaxSize = 1
	if n, _, _ := m.App.Evict(t.Context()); n != 0 {
		t.Fatalf("evicted %d blobs of a tag whose upstream is down", n)
	}
}
