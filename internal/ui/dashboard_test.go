package ui_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/ui"
)

// TestDashboardApp renders the page from a real mirror whose upstream
// answers 429 with Docker Hub's rate-limit headers, configured with a
// username and password (config refuses credentials in the URL).
func TestDashboardApp(t *testing.T) {
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Ratelimit-Limit", "100;w=21600")
		w.Header().Set("Ratelimit-Remaining", "0;w=21600")
		w.Header().Set("Docker-Ratelimit-Source", "203.0.113.7")
		w.Header().Set("Retry-After", "600")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer hub.Close()
	secrets := []string{"hubuser-q3", "hubpass-q4"}
	m := apptest.Start(t, map[string]string{
		"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": "hubuser-q3", "REGCACHE_PASSWORD": "hubpass-q4",
		"REGCACHE_MAX_SIZE": "2GiB",
		// allow: the pull reaches the mirror's own client instead of stopping
		// at the anonymous public-repository check (another client).
		"REGCACHE_PRIVATE": "allow",
	})
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()

	body := get(t, admin.URL+"/", http.StatusOK)
	for _, want := range []string{"docker.io", ">up<", "2.0 GiB", "/metrics", "/status", "/healthz"} {
		if !strings.Contains(body, want) {
			t.Errorf("page before any pull lacks %q:\n%s", want, body)
		}
	}

	// One pull meets the 429: the upstream is held until Retry-After.
	resp, err := http.Get(m.URL + "/v2/library/alpine/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("pull through the mirror: %d, want 429", resp.StatusCode)
	}
	body = get(t, admin.URL+"/", http.StatusOK)
	for _, want := range []string{"docker.io", "rate-limited until", "100 per 21600s", "203.0.113.7"} {
		if !strings.Contains(body, want) {
			t.Errorf("page after a 429 lacks %q:\n%s", want, body)
		}
	}
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("page shows credential %q:\n%s", s, body)
		}
	}
}

func TestDashboardHTTP(t *testing.T) {
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": "http://127.0.0.1:1", "REGCACHE_UPSTREAM_NAME": "docker.io"})
	admin := httptest.NewServer(m.App.AdminHandler())
	t.Cleanup(admin.Close) // after the parallel subtests
	tests := []struct {
		name, method, path string
		status             int
		html               bool
	}{
		{"get", http.MethodGet, "/", http.StatusOK, true},
		{"head", http.MethodHead, "/", http.StatusOK, true},
		{"unknown path", http.MethodGet, "/nope", http.StatusNotFound, false},
		{"under root", http.MethodGet, "/index.html", http.StatusNotFound, false},
		{"post", http.MethodPost, "/", http.StatusMethodNotAllowed, false},
		{"status still json", http.MethodGet, "/status", http.StatusOK, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, admin.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
			}
			ct := resp.Header.Get("Content-Type")
			if isHTML := strings.HasPrefix(ct, "text/html"); isHTML != tt.html {
				t.Errorf("Content-Type %q, want html %v", ct, tt.html)
			}
			if tt.method == http.MethodHead && (len(b) != 0 || resp.ContentLength <= 0) {
				t.Errorf("HEAD: %d body bytes, Content-Length %d", len(b), resp.ContentLength)
			}
		})
	}
}

// TestDashboardRender checks the states, escaping and missing counts
// without a mirror.
func TestDashboardRender(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	snap := ui.Snapshot{Time: now, ActiveFills: 3, Upstreams: []ui.Upstream{
		{Name: "<script>alert(1)</script>", URL: "https://evil.example/?a=<b>", Health: ui.Health{Down: true}},
		{Name: "ghcr.io", URL: "https://ghcr.io", Health: ui.Health{LimitedUntil: now.Add(90 * time.Second)},
			RateLimit: ui.RateLimit{Limit: 100, Remaining: 0, Window: "21600", Source: "198.51.100.1", Updated: now.Add(-time.Minute)}, TokenRequests: 7},
	}, Cache: ui.Cache{Err: errors.New("index <closed>")}}
	body := render(t, ui.New(ui.SourceFunc(func(context.Context) ui.Snapshot { return snap })))
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "down (serving from cache)",
		"rate-limited until 2025-03-01 12:01:30 UTC (1m30s)", "100 per 21600s", "198.51.100.1", "1m0s ago",
		">7<", "3 running", "cache totals unavailable: index &lt;closed&gt;", `http-equiv="refresh" content="10"`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, "<b>") {
		t.Errorf("page has unescaped markup:\n%s", body)
	}

	snap = ui.Snapshot{Time: now, Cache: ui.Cache{Blobs: 2, Bytes: 3 << 29, Tags: 5, Counted: now.Add(-2 * time.Second), MaxSize: 2 << 30, MaxAge: 720 * time.Hour}}
	body = render(t, ui.New(ui.SourceFunc(func(context.Context) ui.Snapshot { return snap }), ui.WithRefresh(0)))
	for _, want := range []string{"no upstreams configured", "1.5 GiB of 2.0 GiB (75%)", ">5<", "720h0m0s", "counted 2s ago"} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "http-equiv") {
		t.Errorf("refresh is off but the page refreshes:\n%s", body)
	}
}

func render(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	return rec.Body.String()
}

func get(t *testing.T, url string, status int) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %d, want %d", url, resp.StatusCode, status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	return string(b)
}
