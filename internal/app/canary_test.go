package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/admin"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regcache/regcache/internal/canary"
	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// canaryGet sends a GET with a User-Agent and returns the status, the body and
// its Docker-Content-Digest.
func canaryGet(t *testing.T, host, path, ua string) (int, []byte, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
	req.Header.Set("User-Agent", ua)
	req.Header.Set("Accept", v1.MediaTypeImageIndex+", "+v1.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header.Get("Docker-Content-Digest")
}

// TestCanaryPull: the canary is pulled through the mirror as an engine
// pulls an image (the index by tag, its manifest by digest, config and
// layer), every digest checks, no upstream is asked (a credentialed one,
// under access.private=deny, where any other repository is asked whether
// it is public), nothing is cached or counted as a hit or a miss, and the
// fleet table, /fleet/canary, /status and the metric show the node.
func TestCanaryPull(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.Seed(t)
	hub.SetCredentials("ci", "hub-secret")
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": "ci", "REGCACHE_PASSWORD": "hub-secret", "REGCACHE_PRIVATE": "deny", "REGCACHE_ALLOW": "127.0.0.0/8"})
	hub.ResetCounters()
	const ua = "docker/25.0.3 go/go1.21.6 git-commit/f417435 kernel/6.1.0 os/linux arch/amd64"
	tag := "v-cafe010203040506"
	code, body, dg := canaryGet(t, m.Host, "/v2/"+canary.Repo+"/manifests/"+tag, ua)
	if code != 200 || digest.FromBytes(body).String() != dg {
		t.Fatalf("GET the canary's tag: %d, digest %s of a body hashing to %s: %s", code, dg, digest.FromBytes(body), body)
	}
	var idx v1.Index
	if err := json.Unmarshal(body, &idx); err != nil || len(idx.Manifests) == 0 {
		t.Fatalf("index: %v %s", err, body)
	}
	code, body, dg = canaryGet(t, m.Host, "/v2/"+canary.Repo+"/manifests/"+idx.Manifests[0].Digest.String(), ua)
	var man v1.Manifest
	if err := json.Unmarshal(body, &man); code != 200 || err != nil || dg != idx.Manifests[0].Digest.String() {
		t.Fatalf("manifest by digest: %d %v %s", code, err, dg)
	}
	for _, d := range append([]v1.Descriptor{man.Config}, man.Layers...) {
		code, body, _ := canaryGet(t, m.Host, "/v2/"+canary.Repo+"/blobs/"+d.Digest.String(), ua)
		if code != 200 || digest.FromBytes(body) != d.Digest || int64(len(body)) != d.Size {
			t.Errorf("blob %s: %d, %d bytes hashing to %s", d.Digest, code, len(body), digest.FromBytes(body))
		}
	}
	if code, _, _ := canaryGet(t, m.Host, "/v2/"+canary.Repo+"/manifests/latest", "curl/8.5.0"); code != 404 {
		t.Errorf("a tag outside the canary's pattern: %d, want 404", code)
	}
	if code, _, _ := canaryGet(t, m.Host, "/v2/"+canary.Repo+"/blobs/"+digest.FromString("x").String(), "curl/8.5.0"); code != 404 {
		t.Errorf("a blob not the canary's: %d, want 404", code)
	}
	for _, r := range hub.Requests() { // the start-up probe asks /v2/ and a token: not about the canary
		if r.Kind != testenv.KindPing && r.Kind != testenv.KindToken || strings.Contains(r.Path, "canary") {
			t.Errorf("the upstream was asked about the canary: %+v", r)
		}
	}
	st := m.App.Status()
	if st.Cache.Bytes != 0 || st.Requests.ByResult["hit"]+st.Requests.ByResult["miss"]+st.Requests.ByResult["error"] != 0 {
		t.Errorf("the canary was cached (%d bytes) or counted as content: %v", st.Cache.Bytes, st.Requests.ByResult)
	}
	if st.Fleet == nil || st.Fleet.LastHour != 1 || len(st.Fleet.Canaries) != 1 || st.Fleet.Canaries[0].Tag != tag ||
		st.Fleet.Recent[0].Engine != (fleet.Engine{Name: fleet.Dockerd, Version: "25.0.3"}) || st.Fleet.Recent[0].Pulls != 1 {
		t.Errorf("/status fleet: %+v", st.Fleet)
	}
	if v := metricValue(t, m, `regcache_fleet_nodes{window="1h"}`); v != 1 {
		t.Errorf(`regcache_fleet_nodes{window="1h"} = %v, want 1`, v)
	}

	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, ui.PathData, nil)
	req.RemoteAddr = "127.0.0.1:40000"
	m.App.AdminHandler().ServeHTTP(rec, req)
	var dash ui.Snapshot
	if err := json.Unmarshal(rec.Body.Bytes(), &dash); err != nil || dash.Fleet.LastHour != 1 || dash.Fleet.LastDay != 1 ||
		dash.Fleet.Canary != "dockerd 25.0.3" || dash.Fleet.CanaryTime.IsZero() {
		t.Errorf("dashboard's nodes card: %v %+v", err, dash.Fleet)
	}

	ask := func(tag string) (int, admin.CanaryAnswer) {
		req := httptest.NewRequest(http.MethodGet, "/fleet/canary?tag="+tag, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		m.App.AdminHandler().ServeHTTP(rec, req)
		var ans admin.CanaryAnswer
		_ = json.Unmarshal(rec.Body.Bytes(), &ans)
		return rec.Code, ans
	}
	if code, ans := ask(tag); code != 200 || !ans.Arrived || ans.Engine.Name != fleet.Dockerd || !ans.SameAddress {
		t.Errorf("/fleet/canary for the pulled tag: %d %+v", code, ans)
	}
	if code, ans := ask("v-0900000000000000"); code != 200 || ans.Arrived {
		t.Errorf("/fleet/canary for a tag never pulled: %d %+v", code, ans)
	}
	if code, _ := ask("latest"); code != 400 {
		t.Errorf("/fleet/canary for a bad tag: %d, want 400", code)
	}
}

// TestCanaryAllowList: the canary is served only to the networks the
// allow-list admits, like every image.
func TestCanaryAllowList(t *testing.T) {
	hub := testenv.NewHub(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_ALLOW": "192.0.2.0/24"})
	code, body, _ := canaryGet(t, m.Host, "/v2/"+canary.Repo+"/manifests/"+"v-0100000000000000", "docker/25.0.3")
	if code != 403 || !strings.Contains(string(body), "DENIED") {
		t.Errorf("canary from a network not allowed: %d %s", code, body)
	}
	if st := m.App.Status(); len(st.Fleet.Canaries) != 0 {
		t.Errorf("a refused canary pull was recorded: %+v", st.Fleet.Canaries)
	}
}

// TestFleetExpected: fleet.expected (a network and a file of addresses)
// lists the expected addresses never seen in /status and the settings;
// a SIGHUP reads the file again, and a file that no longer parses keeps
// the old list and says why.
func TestFleetExpected(t *testing.T) {
	hub := testenv.NewHub(t)
	file := filepath.Join(t.TempDir(), "nodes.txt")
	if err := os.WriteFile(file, []byte("127.0.0.1\n192.0.2.7 # never pulls\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_FLEET_EXPECTED": "10.9.0.0/16," + file})
	if code, _, _ := canaryGet(t, m.Host, "/v2/"+canary.Repo+"/manifests/v-0123456789abcdef", "containerd/1.7.0"); code != 200 {
		t.Fatalf("canary: %d", code)
	}
	e := m.App.Status().Fleet.Expected
	if e == nil || e.Addresses != 2 || e.Networks != 1 || e.NeverSeenCount != 1 || fmt.Sprint(e.NeverSeen) != "[192.0.2.7]" || e.Unexpected != 0 {
		t.Fatalf("fleet.expected in /status: %+v", e)
	}
	if got := m.App.Status().Settings["fleet.expected"]; got != "10.9.0.0/16,127.0.0.1/32,192.0.2.7/32" {
		t.Errorf("settings fleet.expected = %q", got)
	}

	if err := os.WriteFile(file, []byte("192.0.2.8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.App.Reload(m.App.config()); err != nil {
		t.Fatal(err)
	}
	if e := m.App.Status().Fleet.Expected; e == nil || fmt.Sprint(e.NeverSeen) != "[192.0.2.8]" || e.Unexpected != 1 {
		t.Errorf("after the file changed and a reload: %+v", e)
	}
	if err := os.WriteFile(file, []byte("node-7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.App.Reload(m.App.config()); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a bad file on reload: %v", err)
	}
	if got := m.App.Status().Settings["fleet.expected"]; got != "10.9.0.0/16,192.0.2.8/32" {
		t.Errorf("after a bad reload, settings fleet.expected = %q, want the old list", got)
	}
}
