package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

func adminGet(t *testing.T, h http.Handler, path, token string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// TestStartupProbe: with the upstream unreachable from the start (and so
// nothing cached), the mirror says so before any pull (/status, /readyz
// 503, the dashboard, regcache_degraded), with the reason, since and the
// next probe, and does not claim to serve from a cache that is empty; when
// it comes back, the probes mark it up; and no probe was ever a counted
// pull.
func TestStartupProbe(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	hub.Down()
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_PROBE_INTERVAL": "100ms"})
	adm := m.App.AdminHandler()
	var st admin.Status
	waitFor(t, "the start-up probe", func() bool {
		_, body := adminGet(t, adm, "/status", "")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		return st.Upstreams[0].State == admin.StateStaleServing
	})
	u := st.Upstreams[0]
	if st.State != "degraded" || !strings.Contains(u.Reason, "connection refused") || u.Since.IsZero() || u.NextProbe.Before(u.Since) ||
		!u.Health.Down || u.Health.Probe.State != "down" || len(st.Degraded) != 1 || len(st.Reasons) != 1 || st.Reasons[0] != admin.ReasonEmptyDown ||
		strings.Contains(u.StateText, "serving from cache") || !strings.Contains(u.StateText, "nothing is cached") {
		t.Errorf("status with the upstream down from the start: %+v", st)
	}
	code, body := adminGet(t, adm, "/readyz", "")
	if code != 503 || !strings.Contains(body, "not ready, degraded:\n- docker.io: unreachable, and nothing is cached") || !strings.Contains(body, "next probe") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if _, body := adminGet(t, adm, "/metrics", ""); !strings.Contains(body, `regcache_degraded{reason="empty_cache_upstream_down"} 1`) {
		t.Errorf("/metrics lacks the degraded reason:\n%s", grepLines(body, "regcache_degraded"))
	}
	if code, body := adminGet(t, adm, "/healthz", ""); code != 200 || body != "ok\n" {
		t.Errorf("/healthz (liveness) while degraded: %d %q", code, body)
	}
	_, body = adminGet(t, adm, "/dashboard.json", "")
	var s ui.Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatal(err)
	}
	if d := s.Upstreams[0]; s.State != "degraded" || d.State != admin.StateStaleServing || d.Reason == "" || d.Since.IsZero() || d.NextProbe.IsZero() {
		t.Errorf("dashboard with the upstream down: %+v", s.Upstreams[0])
	}

	hub.Up()
	waitFor(t, "the probe to see the upstream back", func() bool { return m.App.Status().State == "healthy" })
	time.Sleep(300 * time.Millisecond) // a few more probes
	if n := hub.Count(http.MethodGet, testenv.KindManifest); n != 0 {
		t.Errorf("probes sent %d manifest GETs", n)
	}
	if r := hub.RateLimitRemaining(); r != 100 {
		t.Errorf("probes spent %d pulls", 100-r)
	}
	if code, body := adminGet(t, adm, "/readyz", ""); code != 200 || body != "ok\n" {
		t.Errorf("/readyz when healthy: %d %q", code, body)
	}
	if _, body := adminGet(t, adm, "/metrics", ""); !strings.Contains(body, `regcache_degraded{reason="empty_cache_upstream_down"} 0`) {
		t.Errorf("/metrics after recovery:\n%s", grepLines(body, "regcache_degraded"))
	}
}

// TestDashboardPrivateNames: repositories fetched with the mirror's
// credentials are named on the dashboard only to a request with the admin
// token; the counts are shown to everyone.
func TestDashboardPrivateNames(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	imgs := hub.Seed(t)
	hub.SetAuth(true)
	hub.SetCredentials("hubuser", "hubpass")
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": "hubuser", "REGCACHE_PASSWORD": "hubpass", "REGCACHE_PRIVATE": "allow",
		"REGCACHE_ADMIN_TOKEN": "admintok-7-long-enough"})
	img := imgs.Single
	if code, _ := fetch(t, m.Host, "/v2/"+img.Repo+"/manifests/"+img.Tag); code != 200 {
		t.Fatalf("pull: %d", code)
	}
	hub.SetRateLimit(100, 0)
	if code, _ := fetch(t, m.Host, "/v2/"+imgs.OCIIndex.Repo+"/manifests/"+imgs.OCIIndex.Tag); code != http.StatusTooManyRequests {
		t.Fatalf("pull without budget: %d", code)
	}
	adm := m.App.AdminHandler()
	snap := func(token string) (ui.Snapshot, string) {
		var s ui.Snapshot
		waitFor(t, "both requests counted", func() bool {
			_, body := adminGet(t, adm, "/dashboard.json", token)
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatal(err)
			}
			return len(s.Errors) == 1 && len(s.TopPulls) == 1
		})
		_, body := adminGet(t, adm, "/dashboard.json", token)
		return s, body
	}
	s, body := snap("")
	if s.Private || s.TopPulls[0].Name != "" || s.TopPulls[0].Count != 1 || s.Errors[0].Repo != "" || s.Errors[0].Reason != "" || s.Errors[0].Status != 429 {
		t.Errorf("without the token: private %v, top %+v, errors %+v", s.Private, s.TopPulls, s.Errors)
	}
	for _, secret := range []string{img.Repo, imgs.OCIIndex.Repo, "hubuser", "hubpass", "admintok-7-long-enough"} {
		if strings.Contains(body, secret) {
			t.Errorf("the dashboard without the token shows %q", secret)
		}
	}
	if _, wrong := snap("not-the-token"); strings.Contains(wrong, img.Repo) {
		t.Error("a wrong token sees private names")
	}
	s, body = snap("admintok-7-long-enough")
	if !s.Private || s.TopPulls[0].Name != img.Repo || s.Errors[0].Repo != imgs.OCIIndex.Repo || s.Errors[0].Reason == "" {
		t.Errorf("with the token: private %v, top %+v, errors %+v", s.Private, s.TopPulls, s.Errors)
	}
	for _, secret := range []string{"hubpass", "admintok-7-long-enough"} {
		if strings.Contains(body, secret) {
			t.Errorf("the dashboard shows %q", secret)
		}
	}
}
