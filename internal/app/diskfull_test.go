package app

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// tmpfs mounts a small tmpfs for the test, failing in CI when it cannot.
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("mount tmpfs (needs root): %v %s", err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func get(t *testing.T, url string) (int, []byte, error) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestDiskFull: with the cache disk full, hits are still served, a miss
// fails with a clear 507 before any byte, the log says the disk is full,
// and nothing half-written survives.
func TestDiskFull(t *testing.T) {
	data := tmpfs(t, "24m")
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithTenLayerImage(40<<20))
	m := startMirrorLogged(t, map[string]string{
		"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data,
		"REGCACHE_PREFETCH": "false",
	})
	if got := pullCrane(t, m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag); got != string(imgs.Single.Digest) {
		t.Fatalf("warm-up pull: %s", got)
	}
	// Fill the disk, leaving less than one ten-layer layer (4 MiB) free.
	filler, err := os.Create(filepath.Join(data, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	os.Truncate(filepath.Join(data, "filler"), mustSize(t, filepath.Join(data, "filler"))-3<<20)

	// A hit is still served.
	if got := pullCrane(t, m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag); got != string(imgs.Single.Digest) {
		t.Fatalf("hit with a full disk: %s", got)
	}
	// A miss fails clearly, before any byte.
	ten := imgs.TenLayer
	status, body, err := get(t, "http://"+m.Host+"/v2/"+ten.Repo+"/manifests/"+ten.Tag)
	if err != nil || status != 200 {
		t.Fatalf("manifest with a full disk: %d %v %s", status, err, body)
	}
	layer := ten.Layers[0]
	status, body, err = get(t, "http://"+m.Host+"/v2/"+ten.Repo+"/blobs/"+string(layer.Digest))
	if err != nil {
		t.Fatalf("miss with a full disk: transfer cut (%v), want a clear error", err)
	}
	if status != http.StatusInsufficientStorage || !strings.Contains(string(body), "disk is full") {
		t.Fatalf("miss with a full disk: %d %s", status, body)
	}
	if strings.Contains(string(body), data) {
		t.Errorf("the answer shows the data directory: %s", body)
	}
	// The fill logs its failure just after its readers learn of it.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(m.log(), "cache disk is full") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(m.log(), "cache disk is full") {
		t.Error("the log does not say the disk is full")
	}
	if left, _ := os.ReadDir(filepath.Join(data, "tmp")); len(left) != 0 {
		t.Errorf("%d temporary files left", len(left))
	}
	// Space comes back: the same pull succeeds and is cached.
	os.Remove(filepath.Join(data, "filler"))
	status, body, err = get(t, "http://"+m.Host+"/v2/"+ten.Repo+"/blobs/"+string(layer.Digest))
	if err != nil || status != 200 || fmt.Sprintf("sha256:%x", sha256.Sum256(body)) != string(layer.Digest) {
		t.Fatalf("after freeing space: %d %v", status, err)
	}
}

func mustSize(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
