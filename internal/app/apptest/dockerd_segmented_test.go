package apptest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// TestDockerdSegmentedPull: dockerd fetches a layer over one connection;
// through a cold regcache the layer is filled over several range requests
// at once (upstreams[].fill_connections), so against an upstream that
// throttles each connection the pull is not held to one connection's rate.
// The image pulled through regcache has the upstream's digest, the
// stand-in sends the layer's bytes about once (at most 1.05 times), and
// regcache asked for it in ranges; the times direct and through regcache
// are logged (not asserted: the machine is shared).
func TestDockerdSegmentedPull(t *testing.T) {
	const size = 64 << 20
	hub, img, ranges := throttledLayer(t, size) // 8 MiB/s per connection
	layer := string(img.Layers[0].Digest)
	digestOf := func(d *testenv.Dockerd, ref string) string {
		out, err := d.Docker(withTimeout(t, time.Minute), "image", "inspect", "--format", "{{join .RepoDigests \" \"}}", ref)
		if err != nil {
			t.Fatalf("docker image inspect %s: %v\n%s", ref, err, out)
		}
		return strings.TrimSpace(out)
	}

	// Direct: dockerd pulls from the stand-in itself, one connection.
	direct := testenv.StartDockerd(t, testenv.DockerdOptions{Config: fmt.Sprintf(`{"insecure-registries": [%q]}`, hub.Host)})
	hub.ResetCounters()
	began := time.Now()
	if out, err := direct.Docker(withTimeout(t, 3*time.Minute), "pull", hub.Host+"/"+img.Repo+":"+img.Tag); err != nil {
		t.Fatalf("docker pull direct: %v\n%s\n%s", err, out, direct.Log())
	}
	directTook := time.Since(began)
	t.Logf("direct: %s, %.3f × the layer's bytes, %d ranges", directTook.Round(time.Millisecond), float64(hub.BlobBytes(layer))/size, ranges())

	// Through a cold regcache with the default fill_connections.
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "upstreams:\n  - name: docker.io\n    url: %s\n", hub.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	m := apptest.Start(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_PREFETCH": "false"})
	d := testenv.StartDockerd(t, testenv.DockerdOptions{
		Config: fmt.Sprintf(`{"registry-mirrors": [%q], "insecure-registries": [%q]}`, m.URL, m.Host),
	})
	hub.ResetCounters()
	began = time.Now()
	if out, err := d.Docker(withTimeout(t, 3*time.Minute), "pull", img.Repo+":"+img.Tag); err != nil {
		t.Fatalf("docker pull through regcache: %v\n%s\n%s", err, out, d.Log())
	}
	took := time.Since(began)
	got := hub.BlobBytes(layer)
	t.Logf("through regcache: %s (%.2f × direct), the stand-in sent %.3f × the layer's bytes in %d ranges",
		took.Round(time.Millisecond), took.Seconds()/directTook.Seconds(), float64(got)/size, ranges())
	// docker names Docker Hub's official images without library/.
	if got, want := digestOf(d, img.Repo+":"+img.Tag), strings.TrimPrefix(img.Repo, "library/")+"@"+string(img.Digest); got != want {
		t.Errorf("RepoDigests through regcache %q, want %q", got, want)
	}
	if got > size*105/100 {
		t.Errorf("the stand-in sent %d bytes of the %d-byte layer (%.2f ×), want at most 1.05 ×", got, size, float64(got)/size)
	}
	if n := ranges(); n < 2 {
		t.Errorf("regcache fetched the layer with %d range requests: not over several connections", n)
	}
}
