package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// getManifest GETs a manifest through the mirror and returns the
// X-Regcache-Rule header.
func getManifest(t *testing.T, host, repo, ref string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s:%s: %s", repo, ref, resp.Status)
	}
	return resp.Header.Get("X-Regcache-Rule")
}

// TestRules: freshness per pattern (revalidations counted at the
// upstream), an immutable tag costs no upstream request after its first
// pull with the global freshness at 0, the rule that applied is in
// X-Regcache-Rule and `cache ls`, a pinned image survives a cap that
// evicts everything else (and /readyz's reasons say the cap cannot be
// met), and a SIGHUP applies a new rules list.
func TestRules(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.Seed(t, testenv.WithTag("v1.2.3"))
	file := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := `rules:
  - match: docker.io/library/single:*
    pin: true
  - match: "docker.io/**:/^v[0-9]+\\.[0-9]+\\.[0-9]+$/"
    immutable: true
  - match: docker.io/library/multi
    freshness: 1h
`
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startMirrorLogged(t, map[string]string{"REGCACHE_CONFIG": file, "REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_PREFETCH": "false", "REGCACHE_FRESHNESS": "0s"})
	upstreamAsks := func() int { return hub.Count("HEAD", testenv.KindManifest) + hub.Count("GET", testenv.KindManifest) }

	tests := []struct {
		repo, tag, rule string
		asks            int // upstream requests of a second pull
	}{
		{"library/oci", "v1.2.3", "rules[1] docker.io/**:/^v[0-9]+\\.[0-9]+\\.[0-9]+$/", 0},
		{"library/multi", "latest", "rules[2] docker.io/library/multi", 0},
		{"library/oci", "latest", "", 1}, // no rule: the global freshness (0s) revalidates
	}
	for _, tt := range tests {
		getManifest(t, m.Host, tt.repo, tt.tag)
		hub.ResetCounters()
		if got := getManifest(t, m.Host, tt.repo, tt.tag); got != tt.rule {
			t.Errorf("%s:%s: X-Regcache-Rule %q, want %q", tt.repo, tt.tag, got, tt.rule)
		}
		if n := upstreamAsks(); n != tt.asks {
			t.Errorf("%s:%s: second pull asked the upstream %d times, want %d", tt.repo, tt.tag, n, tt.asks)
		}
	}

	// Pinned: single survives a 1-byte cap that takes everything else.
	pullCrane(t, m.Host+"/"+imgs.Single.Repo+":latest")
	pullCrane(t, m.Host+"/"+imgs.OCIIndex.Repo+":latest")
	for deadline := time.Now().Add(10 * time.Second); m.App.fills.Active() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // a blob is in the index once its fill commits
	}
	m.App.evictor.SetMaxSize(1)
	if _, _, err := m.App.evictor.Evict(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, b := range imgs.Single.Blobs() {
		if _, err := m.App.store.Stat(t.Context(), b.Digest); err != nil {
			t.Errorf("pinned blob %s evicted: %v", b.Digest, err)
		}
	}
	for _, b := range imgs.OCIIndex.Blobs() {
		if _, err := m.App.store.Stat(t.Context(), b.Digest); err == nil {
			t.Errorf("unpinned blob %s kept over the cap", b.Digest)
		}
	}
	if d := strings.Join(m.App.Status().Degraded, "\n"); !strings.Contains(d, "pinned images") {
		t.Errorf("degraded reasons do not say the pinned images exceed the cap: %q", d)
	}
	w := httptest.NewRecorder()
	m.App.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, ui.PathData, nil))
	var dash ui.Snapshot
	if err := json.Unmarshal(w.Body.Bytes(), &dash); err != nil || dash.Cache.Pinned <= 0 {
		t.Errorf("the dashboard's pinned bytes: %d (%v)", dash.Cache.Pinned, err)
	}
	if !strings.Contains(m.log(), "pinned images alone exceed storage.max_size") {
		t.Errorf("the log does not say the cap cannot be met:\n%s", m.log())
	}

	l, err := m.App.evictor.Ops().List(t.Context(), cache.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]string{}
	for _, im := range l.Images {
		rules[im.Repository+":"+im.Tag] = im.Rule
	}
	if rules["library/single:latest"] != "rules[0] docker.io/library/single:*" || rules["library/multi:latest"] != "rules[2] docker.io/library/multi" {
		t.Errorf("cache ls rules: %v", rules)
	}

	// SIGHUP with no rules: multi is revalidated (global freshness 0s).
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	next := m.App.config()
	next.Rules = nil
	if _, _, err := m.App.Reload(next); err != nil {
		t.Fatal(err)
	}
	hub.ResetCounters()
	if got := getManifest(t, m.Host, "library/multi", "latest"); got != "" {
		t.Errorf("after the reload, X-Regcache-Rule %q", got)
	}
	if n := upstreamAsks(); n != 1 {
		t.Errorf("after the reload dropped the rule, a pull asked the upstream %d times, want 1", n)
	}
	if _, over := m.App.evictor.Pinned(); over {
		// The next pass without pins clears it.
		if _, _, err := m.App.evictor.Evict(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, over := m.App.evictor.Pinned(); over {
			t.Error("still degraded for pinned images after the rules dropped the pin")
		}
	}
}
