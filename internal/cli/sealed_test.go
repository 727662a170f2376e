package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// TestSealedUpstream: a sealed upstream (upstreams[].sealed, switched by
// SIGHUP) gets no request at all (counted at the upstream: no probe, no
// token, no HEAD of a tag past its freshness) while cached images are
// served; a miss is answered 404 naming the seal, and is listed in
// /status and `cache ls --missing`; unsealed, pulls reach it again.
func TestSealedUpstream(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	file := func(sealed bool) string {
		return "upstreams:\n  - {name: docker.io, url: '" + hub.URL + "', sealed: " + strconv.FormatBool(sealed) + "}\n"
	}
	cfg := writeConfig(t, file(false))
	env := map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_FRESHNESS": "0s", "REGCACHE_PREFETCH": "false",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_PROBE_INTERVAL": "50ms", "REGCACHE_LOG_LEVEL": "debug"}
	m := apptest.Start(t, env)
	env["REGCACHE_DATA"] = m.Data
	pullImage(t, m.Host+"/single:latest", amd64)

	seal := func(on bool) { // as SIGHUP does: the file is read again
		t.Helper()
		if err := os.WriteFile(cfg, []byte(file(on)), 0o600); err != nil {
			t.Fatal(err)
		}
		next, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
		if err != nil {
			t.Fatal(err)
		}
		reloaded, restart, err := m.App.Reload(next)
		if err != nil || len(restart) != 0 || !slices.ContainsFunc(reloaded, func(s string) bool { return strings.HasPrefix(s, "upstreams[docker.io].sealed") }) {
			t.Fatalf("reload: %v %v %v", reloaded, restart, err)
		}
	}
	seal(true)
	hub.ResetCounters()
	pullImage(t, m.Host+"/single:latest", amd64) // a hit, though past its freshness
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, m.URL+"/v2/multi/manifests/latest", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "sealed") || !strings.Contains(string(body), "MANIFEST_UNKNOWN") {
		t.Errorf("a miss on a sealed upstream: %s %s", resp.Status, body)
	}
	resp, err = http.Get(m.URL + "/v2/single/blobs/" + string(imgs.ManifestList.Platforms[0].Layers[0].Digest))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a blob miss on a sealed upstream: %s", resp.Status)
	}
	if rs := hub.Requests(); len(rs) != 0 {
		t.Errorf("the sealed upstream got %d requests, the first %+v", len(rs), rs[0])
	}
	h := m.App.Status().Upstreams[0].Health
	if !h.Sealed || h.SealedMissTotal < 2 {
		t.Errorf("/status: sealed %v with %d misses", h.Sealed, h.SealedMissTotal)
	}
	resp, err = http.Get("http://" + m.Admin + ui.PathData)
	if err != nil {
		t.Fatal(err)
	}
	var dash ui.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&dash)
	resp.Body.Close()
	if err != nil || len(dash.Upstreams) == 0 || !dash.Upstreams[0].Sealed || dash.Upstreams[0].SealedMisses < 2 {
		t.Errorf("the dashboard's upstream card: %+v (%v), want sealed with its misses", dash.Upstreams, err)
	}
	resp, err = http.Get("http://" + m.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `regcache_sealed_misses_total{upstream="docker.io"}`) {
		t.Error("/metrics has no regcache_sealed_misses_total")
	}
	out, err := runCLI(t, "cache", "ls", "--missing", "--admin", m.Admin)
	if err != nil || !strings.Contains(out, "library/multi:latest") || !strings.Contains(out, "WOULD HAVE FETCHED") {
		t.Errorf("cache ls --missing: %v\n%s", err, out)
	}

	// sealed_miss_status: 503, by SIGHUP: the same miss is UNAVAILABLE,
	// still naming the seal, and still asks the upstream nothing.
	file503 := file(true) + "sealed_miss_status: 503\n"
	if err := os.WriteFile(cfg, []byte(file503), 0o600); err != nil {
		t.Fatal(err)
	}
	next, err := config.Load(nil, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if reloaded, restart, err := m.App.Reload(next); err != nil || len(restart) != 0 || !slices.Contains(reloaded, "sealed_miss_status") {
		t.Fatalf("reload to sealed_miss_status 503: %v %v %v", reloaded, restart, err)
	}
	for _, path := range []string{"/v2/multi/manifests/latest", "/v2/single/blobs/" + string(imgs.ManifestList.Platforms[0].Layers[0].Digest)} {
		resp, err := http.Get(m.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "sealed") || !strings.Contains(string(body), "UNAVAILABLE") {
			t.Errorf("a miss on a sealed upstream with sealed_miss_status 503: %s %s", resp.Status, body)
		}
	}
	if rs := hub.Requests(); len(rs) != 0 {
		t.Errorf("the sealed upstream got %d requests, the first %+v", len(rs), rs[0])
	}
	if got := m.App.Status().Settings["sealed_miss_status"]; got != "503" {
		t.Errorf("/status settings sealed_miss_status: %q", got)
	}

	seal(false)
	manifestGet(t, m.URL, testenv.Image{Repo: "multi", Tag: "latest", Digest: imgs.ManifestList.Digest, MediaType: imgs.ManifestList.MediaType})
	if _, g := manifestAsks(hub); g == 0 {
		t.Error("unsealed, the pull did not reach the upstream")
	}
}

// TestSealedOptionTakesEffect: --sealed (as REGCACHE_SEALED) seals every
// upstream: a pull is answered 404 naming the seal, and the upstream gets
// no request at all; with --sealed-miss-status 503, 503 UNAVAILABLE.
func TestSealedOptionTakesEffect(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_SEALED": "true"})
	resp, err := http.Get(m.URL + "/v2/" + imgs.Single.Repo + "/manifests/" + imgs.Single.Tag)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "sealed") {
		t.Errorf("a pull with --sealed: %s %s", resp.Status, body)
	}
	if rs := hub.Requests(); len(rs) != 0 {
		t.Errorf("the upstream got %d requests with --sealed: %+v", len(rs), rs[0])
	}

	m503 := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_SEALED": "true",
		"REGCACHE_SEALED_MISS_STATUS": "503"})
	resp, err = http.Get(m503.URL + "/v2/" + imgs.Single.Repo + "/manifests/" + imgs.Single.Tag)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "sealed") {
		t.Errorf("a pull with --sealed --sealed-miss-status 503: %s %s", resp.Status, body)
	}
}
