package app

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/testenv"
)

// readOnly bind-mounts dir over itself read-only for the test (a real
// read-only directory even for root), failing in CI when it cannot.
func readOnly(t *testing.T, dir string) {
	t.Helper()
	for _, args := range [][]string{{"--bind", dir, dir}, {"-o", "remount,bind,ro", dir}} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			msg := fmt.Sprintf("mount %v (needs root): %v %s", args, err, out)
			exec.Command("umount", "-l", dir).Run()
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// TestReadOnlyDataDirectory: with blobs/ and then tmp/ read-only, hits are
// served, uncached manifests and blobs are served (verified, not cached),
// no answer shows a local path, and /readyz says what is degraded.
func TestReadOnlyDataDirectory(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	data := t.TempDir()
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_DATA": data, "REGCACHE_PREFETCH": "false"})
	warm := imgs.Single
	if got := pullCrane(t, m.Host+"/"+warm.Repo+":"+warm.Tag); got != string(warm.Digest) {
		t.Fatalf("warm-up: %s", got)
	}
	base := "http://" + m.Host + "/v2/"
	check := func(what, path string, want []byte) {
		t.Helper()
		status, body, err := get(t, base+path)
		if err != nil || status != 200 {
			t.Errorf("%s: %d %v %s", what, status, err, body)
		}
		if strings.Contains(string(body), data) {
			t.Errorf("%s: the answer shows the data directory", what)
		}
		if want != nil && string(body) != string(want) {
			t.Errorf("%s: wrong bytes", what)
		}
	}
	readOnly(t, data+"/blobs")
	cold := imgs.ManifestList.Platforms[0]
	check("uncached manifest, blobs/ read-only", imgs.ManifestList.Repo+"/manifests/"+imgs.ManifestList.Tag, nil)
	readOnly(t, data+"/tmp")
	check("hit", warm.Repo+"/manifests/"+warm.Tag, nil)
	for _, b := range cold.Blobs() {
		status, body, err := get(t, base+imgs.ManifestList.Repo+"/blobs/"+string(b.Digest))
		sum := sha256.Sum256(body)
		if err != nil || status != 200 || "sha256:"+hex.EncodeToString(sum[:]) != string(b.Digest) {
			t.Errorf("uncached blob, tmp/ read-only: %d %v", status, err)
		}
		if strings.Contains(string(body), data) {
			t.Error("the answer shows the data directory")
		}
	}
	// Several ranges of a blob streamed without caching: a clear 416, not
	// a cut or the whole blob.
	layer := cold.Layers[0]
	req, _ := http.NewRequest(http.MethodGet, base+imgs.ManifestList.Repo+"/blobs/"+string(layer.Digest), nil)
	req.Header.Set("Range", "bytes=0-1,5-6")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("multi-range, tmp/ read-only: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || !strings.Contains(string(body), "one range per request") {
			t.Errorf("multi-range, tmp/ read-only: %d %s", resp.StatusCode, body)
		}
	}
	w := httptest.NewRecorder()
	m.App.AdminHandler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "degraded") {
		t.Errorf("/readyz with a read-only cache: %d %s", w.Code, w.Body)
	}
}
