package app

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// TestBreakerVisible: an open breaker's scope, last error, since and next
// probe are in /status, the metrics and the dashboard, and the log says
// once that it opened.
func TestBreakerVisible(t *testing.T) {
	hub := testenv.NewHub(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	hub.Down()
	c := m.App.upstreams[0].Client
	for range 8 {
		c.Ping(t.Context())
	}
	adm := m.App.AdminHandler()
	get := func(path string) string {
		w := httptest.NewRecorder()
		adm.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 {
			t.Fatalf("%s: %d", path, w.Code)
		}
		return w.Body.String()
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(get("/status")), &st); err != nil {
		t.Fatal(err)
	}
	h := st.Upstreams[0].Health
	if !h.Down || len(h.Breakers) != 1 {
		t.Fatalf("status health: %+v", h)
	}
	b := h.Breakers[0]
	if b.Scope != "manifests" || !b.Open || b.LastError == "" || b.Since.IsZero() || b.NextProbe.Before(b.Since) {
		t.Fatalf("status breaker: %+v", b)
	}
	if metrics := get("/metrics"); !strings.Contains(metrics, `regcache_upstream_breaker_open{scope="manifests",upstream="docker.io"} 1`) {
		t.Errorf("metrics lack the open breaker:\n%s", grepLines(metrics, "breaker"))
	}
	var dash ui.Snapshot
	if err := json.Unmarshal([]byte(get("/dashboard.json")), &dash); err != nil {
		t.Fatal(err)
	}
	if u := dash.Upstreams[0]; u.State != "stale-serving" || len(u.Breakers) != 1 || u.Breakers[0].Scope != "manifests" || u.Reason == "" || u.Since.IsZero() {
		t.Errorf("dashboard does not show the open breaker: %+v", u)
	}
	if n := strings.Count(m.log(), "upstream breaker opened"); n != 1 {
		t.Errorf("log says the breaker opened %d times, want once:\n%s", n, m.log())
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
