package cli

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// TestStatusCommand: after a pull through a Docker-Hub-like upstream,
// `regcache status` shows its rate limit as the upstream reported it.
func TestStatusCommand(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	imgs := hub.Seed(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	if _, err := crane.Digest(m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag, crane.Insecure); err != nil {
		t.Fatal(err)
	}
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()
	var out bytes.Buffer
	root := NewRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"status", "--admin", strings.TrimPrefix(admin.URL, "http://")})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	remaining := hub.RateLimitRemaining()
	for _, want := range []string{"docker.io", hub.URL, "100/21600s", " " + itoa(remaining) + " ", "up"} {
		if !strings.Contains(got, want) {
			t.Errorf("status output lacks %q:\n%s", want, got)
		}
	}
	// A mirror that is not there: a clear error naming the fix.
	root = NewRoot()
	root.SetArgs([]string{"status", "--admin", "127.0.0.1:9"})
	root.SetOut(&out)
	if err := root.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "is regcache serve running") {
		t.Errorf("status without a mirror: %v", err)
	}
}

// TestStatusPrintsOpenBreakers: each open breaker gets a line with its
// scope, since, last error and next probe.
func TestStatusPrintsOpenBreakers(t *testing.T) {
	since := time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
	st := admin.Status{Upstreams: []admin.UpstreamStatus{{Name: "docker.io", URL: "https://registry-1.docker.io",
		Health: upstream.Health{Down: true, Breakers: []upstream.BreakerState{
			{Scope: "blobs", Failures: 1},
			{Scope: "manifests", Open: true, Failures: 5, LastError: "503 Service Unavailable", Since: since, NextProbe: since.Add(time.Second)},
		}}}}}
	var b strings.Builder
	if err := printStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	want := "docker.io: manifests breaker open since 2026-12-03T06:00:00Z (last error: 503 Service Unavailable); the first request after 2026-12-03T06:00:01Z probes it"
	if !strings.Contains(b.String(), want) || strings.Contains(b.String(), "blobs breaker") {
		t.Errorf("status output:\n%s\nwant a line %q and none for the closed blobs breaker", b.String(), want)
	}
}

// TestMirrorURLErrorsRedacted: the --mirror errors of warm and client
// never echo a password.
func TestMirrorURLErrorsRedacted(t *testing.T) {
	for _, s := range []string{"https://u:PW@mirror/x/y", "ftp://u:PW@host", "https://u:PW@host\x7f"} {
		if _, err := parseMirrorURL(s); err == nil || strings.Contains(err.Error(), "PW") {
			t.Errorf("parseMirrorURL(%q): %v", s, err)
		}
	}
	if _, _, err := dockerClient("tcp://u:PW@host\x7f"); err == nil || strings.Contains(err.Error(), "PW") {
		t.Errorf("dockerClient: %v", err)
	}
}
