package app

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
)

// startWithAdmin runs a mirror of the Hub stand-in with its admin listener
// on loopback, as `regcache serve` does, and returns the admin host:port.
func startWithAdmin(t *testing.T, hub *testenv.Hub, env map[string]string) (*running, string) {
	t.Helper()
	base := map[string]string{"REGCACHE_DATA": t.TempDir(), "REGCACHE_UPSTREAM_URL": hub.URL,
		"REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_ADMIN_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	a, err := New(t.Context(), cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adminLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, adminLn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("mirror did not stop")
		}
		a.Close()
	})
	return &running{Host: ln.Addr().String(), App: a, logs: logs}, adminLn.Addr().String()
}

// adminCall sends one request to the admin listener and returns the
// status and body.
func adminCall(t *testing.T, method, url, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminListenerCrossSite: with no admin_token, a web page cannot drive
// the admin listener: an HTML form's text/plain POST (the body
// `{"toSize":1}=`) does not prune, nor does a JSON POST from another
// Origin or with Sec-Fetch-Site: cross-site, nor a body with bytes after
// the JSON; a DNS-rebound name (a Host the listener does not serve) reads
// nothing. regcache's own calls (JSON, loopback names) still work.
func TestAdminListenerCrossSite(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	m, admin := startWithAdmin(t, hub, nil)
	if got := pullCrane(t, m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag); got != string(imgs.Single.Digest) {
		t.Fatal(got)
	}
	waitFor(t, "the image's blobs committed", func() bool { st := m.App.admin.Stats(); return st.Totals.Blobs >= 3 })
	base := "http://" + admin
	prune := base + "/cache/prune"
	attacks := []struct {
		name, body string
		header     map[string]string
		want       int
	}{
		{"HTML form, text/plain", `{"toSize":1}=`, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"no content type", `{"toSize":1}`, nil, http.StatusUnsupportedMediaType},
		{"form urlencoded", `{"toSize":1}=`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"other Origin", `{"toSize":1}`, map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"null Origin", `{"toSize":1}`, map[string]string{"Content-Type": "application/json", "Origin": "null"}, http.StatusForbidden},
		{"Sec-Fetch-Site cross-site", `{"toSize":1}`, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"Sec-Fetch-Site same-site", `{"toSize":1}`, map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"trailing bytes", `{"toSize":1}{"x":1}`, map[string]string{"Content-Type": "application/json"}, http.StatusBadRequest},
		{"rebound Host", `{"toSize":1}`, map[string]string{"Content-Type": "application/json", "Host": "evil.example:5001"}, http.StatusMisdirectedRequest},
	}
	for _, a := range attacks {
		if code, body := adminCall(t, http.MethodPost, prune, a.body, a.header); code != a.want {
			t.Errorf("%s: %d %.200s, want %d", a.name, code, body, a.want)
		}
	}
	if st := m.App.admin.Stats(); st.Totals.Blobs < 3 || st.Totals.Manifests == 0 {
		t.Fatalf("the cache was pruned by a cross-site request: %+v", st)
	}
	// DNS rebinding: every answer checks Host.
	for _, path := range []string{"/cache/ls", "/status", "/metrics", "/"} {
		code, body := adminCall(t, http.MethodGet, base+path, "", map[string]string{"Host": "rebind.evil.example:5001"})
		if code != http.StatusMisdirectedRequest || strings.Contains(body, imgs.Single.Repo) {
			t.Errorf("GET %s with a rebound Host: %d %.200s", path, code, body)
		}
	}
	// The listener's own names, and regcache's own calls.
	for _, host := range []string{admin, "localhost:1", "[::1]:5001"} {
		if code, body := adminCall(t, http.MethodGet, base+"/cache/ls", "", map[string]string{"Host": host}); code != http.StatusOK || !strings.Contains(body, imgs.Single.Repo) {
			t.Errorf("GET /cache/ls as %s: %d %.200s", host, code, body)
		}
	}
	same := map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": base, "Sec-Fetch-Site": "same-origin"}
	if code, body := adminCall(t, http.MethodPost, prune, `{"toSize":1,"dryRun":true}`+"\n", same); code != http.StatusOK {
		t.Errorf("same-origin JSON prune (dry run): %d %.200s", code, body)
	}
}

// TestAdminTokenGuessing: wrong admin tokens are logged (without the
// token), counted in regcache_auth_failures_total{listener="admin"}, and
// after five from one address that address is refused unchecked, even
// with the right token, while other addresses are not slowed.
func TestAdminTokenGuessing(t *testing.T) {
	const token = "right-admin-token-0123456789"
	hub := testenv.NewHub(t)
	m, admin := startWithAdmin(t, hub, map[string]string{"REGCACHE_ADMIN_TOKEN": token})
	prune := "http://" + admin + "/cache/prune"
	call := func(tok string) int {
		code, _ := adminCall(t, http.MethodPost, prune, `{"toSize":1,"dryRun":true}`,
			map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + tok})
		return code
	}
	for i := range 6 {
		if code := call("guess-number-" + string(rune('a'+i))); code != http.StatusForbidden {
			t.Fatalf("wrong token %d: %d", i, code)
		}
	}
	if code := call(token); code != http.StatusForbidden {
		t.Errorf("right token during the backoff: %d, want 403 (not even compared)", code)
	}
	if n := metricValue(t, m, `regcache_auth_failures_total{listener="admin"}`); n != 6 {
		t.Errorf("regcache_auth_failures_total{listener=\"admin\"} = %v, want 6", n)
	}
	if n := metricValue(t, m, `regcache_auth_throttled_total{listener="admin"}`); n != 1 {
		t.Errorf("regcache_auth_throttled_total{listener=\"admin\"} = %v, want 1", n)
	}
	if log := m.log(); !strings.Contains(log, "wrong admin token") || strings.Contains(log, "guess-number") {
		t.Errorf("log: %s", log)
	}
	// Another address is not slowed down.
	r, _ := http.NewRequest(http.MethodPost, "/cache/prune", strings.NewReader(`{"toSize":1,"dryRun":true}`))
	r.RemoteAddr, r.Host = "192.0.2.9:4000", admin
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	m.App.AdminHandler().ServeHTTP(w, r)
	if w.Code == http.StatusForbidden {
		t.Errorf("the right token from another address was refused: %s", w.Body)
	}
}
