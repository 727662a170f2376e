package ui_test

import (
	"encoding/json"
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

// TestDashboardApp reads the dashboard's data from a real mirror whose
// upstream answers 429 with Docker Hub's rate-limit headers, configured
// with a username and password (config refuses credentials in the URL).
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

	page := get(t, admin.URL+"/", http.StatusOK, "text/html")
	for _, want := range []string{"/dashboard/app.js", "/dashboard/app.css", "/metrics", "/status", "/healthz"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
	s := data(t, admin.URL)
	if len(s.Upstreams) != 1 || s.Upstreams[0].Name != "docker.io" || s.Cache.MaxSize != 2<<30 {
		t.Fatalf("data before any pull: %+v", s)
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
	// A request is counted when its handler returns, which may be just
	// after the client read the answer.
	for deadline := time.Now().Add(10 * time.Second); s.Totals.ByResult["error"] == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		s = data(t, admin.URL)
	}
	raw := get(t, admin.URL+"/dashboard.json", http.StatusOK, "application/json")
	u := s.Upstreams[0]
	if u.State != "rate-limited" || !strings.Contains(u.StateText, "rate-limited until") || u.RateLimit.Limit != 100 ||
		u.RateLimit.Remaining != 0 || u.RateLimit.Source != "203.0.113.7" || u.RateLimit.Reset.IsZero() {
		t.Errorf("upstream after a 429: %+v", u)
	}
	if s.Totals.ByResult["error"] != 1 || len(s.Errors) != 1 || s.Errors[0].Status != 429 {
		t.Errorf("the 429 is not counted as an error: %+v %+v", s.Totals, s.Errors)
	}
	for _, sec := range secrets {
		if strings.Contains(raw, sec) || strings.Contains(page, sec) {
			t.Errorf("dashboard shows credential %q:\n%s", sec, raw)
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
		ctype              string
	}{
		{"get", http.MethodGet, "/", http.StatusOK, "text/html"},
		{"head", http.MethodHead, "/", http.StatusOK, "text/html"},
		{"data", http.MethodGet, "/dashboard.json", http.StatusOK, "application/json"},
		{"data 24h", http.MethodGet, "/dashboard.json?span=24h", http.StatusOK, "application/json"},
		{"data bad span", http.MethodGet, "/dashboard.json?span=7d", http.StatusBadRequest, "text/plain"},
		{"script", http.MethodGet, "/dashboard/app.js", http.StatusOK, "text/javascript"},
		{"style", http.MethodGet, "/dashboard/app.css", http.StatusOK, "text/css"},
		{"unknown asset", http.MethodGet, "/dashboard/nope.js", http.StatusNotFound, "text/plain"},
		{"no listing", http.MethodGet, "/dashboard/", http.StatusNotFound, "text/plain"},
		{"unknown path", http.MethodGet, "/nope", http.StatusNotFound, "text/plain"},
		{"under root", http.MethodGet, "/index.html", http.StatusNotFound, "text/plain"},
		{"post", http.MethodPost, "/", http.StatusMethodNotAllowed, "text/plain"},
		{"status still json", http.MethodGet, "/status", http.StatusOK, "application/json"},
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
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("Content-Type %q, want %s", ct, tt.ctype)
			}
			if tt.method == http.MethodHead && (len(b) != 0 || resp.ContentLength <= 0) {
				t.Errorf("HEAD: %d body bytes, Content-Length %d", len(b), resp.ContentLength)
			}
			if tt.status == http.StatusOK && tt.path != "/status" && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'self'") {
				t.Errorf("CSP %q", resp.Header.Get("Content-Security-Policy"))
			}
		})
	}
}

// TestDashboardData checks the data endpoint without a mirror: the span
// reaches the source, markup stays inert text in the JSON, the cache's
// error and max age are written out.
func TestDashboardData(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var asked time.Duration
	d := ui.New(ui.SourceFunc(func(_ *http.Request, span time.Duration) ui.Snapshot {
		asked = span
		return ui.Snapshot{Time: now, Upstreams: []ui.Upstream{{Name: "<script>alert(1)</script>", URL: "https://evil.example/?a=<b>"}},
			Cache: ui.Cache{Err: errors.New("index <closed>"), MaxAge: 720 * time.Hour}}
	}))
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dashboard.json?span=24h", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK || asked != 24*time.Hour {
		t.Fatalf("status %d, span %v", rec.Code, asked)
	}
	if strings.Contains(body, "<") || !strings.Contains(body, `\u003cscript\u003e`) {
		t.Errorf("markup not escaped in the JSON: %s", body)
	}
	for _, want := range []string{`"cacheError":"index \u003cclosed\u003e"`, `"maxAge":"720h0m0s"`} {
		if !strings.Contains(body, want) {
			t.Errorf("data lacks %s: %s", want, body)
		}
	}
}

func data(t *testing.T, admin string) ui.Snapshot {
	t.Helper()
	var s ui.Snapshot
	if err := json.Unmarshal([]byte(get(t, admin+"/dashboard.json", http.StatusOK, "application/json")), &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, url string, status int, ctype string) string {
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
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, ctype) {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	return string(b)
}
