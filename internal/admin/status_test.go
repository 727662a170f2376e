package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// TestOneStatusModel: /status and the dashboard's data render the same
// Status: after pulls through a running mirror, the dashboard's totals,
// fills, state, degraded list and upstream states are /status's.
func TestOneStatusModel(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	imgs := hub.Seed(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	for _, img := range []testenv.Image{imgs.Single, imgs.Single} { // a miss, then a hit
		if _, err := crane.Pull(m.Host+"/"+img.Repo+":"+img.Tag, crane.Insecure); err != nil {
			t.Fatal(err)
		}
	}
	h := m.App.AdminHandler()
	var st admin.Status
	var dash ui.Snapshot
	for deadline := time.Now().Add(10 * time.Second); ; {
		get(t, h, "/status", &st)
		get(t, h, "/dashboard.json", &dash)
		if reflect.DeepEqual(dash.Totals, st.Requests) || time.Now().After(deadline) {
			break // equal, unless a commit landed between the two reads
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.Requests.ByResult["hit"] == 0 || st.Requests.ByResult["miss"] == 0 {
		t.Fatalf("/status counted no hit or no miss: %+v", st.Requests)
	}
	if !reflect.DeepEqual(dash.Totals, st.Requests) {
		t.Errorf("dashboard totals %+v, /status requests %+v", dash.Totals, st.Requests)
	}
	if dash.State != st.State || !reflect.DeepEqual(dash.Degraded, append([]string{}, st.Degraded...)) || len(dash.Fills) != len(st.Fills) {
		t.Errorf("dashboard %s %q, %d fills; /status %s %q, %d fills", dash.State, dash.Degraded, len(dash.Fills), st.State, st.Degraded, len(st.Fills))
	}
	if len(dash.Upstreams) != len(st.Upstreams) {
		t.Fatalf("dashboard %d upstreams, /status %d", len(dash.Upstreams), len(st.Upstreams))
	}
	for i, u := range st.Upstreams {
		d := dash.Upstreams[i]
		if d.Name != u.Name || d.State != u.State || d.StateText != u.StateText || d.PullsSaved != u.PullsSaved ||
			d.RateLimit.Limit != u.RateLimit.Limit || d.RateLimit.Reserve != u.Reserve {
			t.Errorf("upstream %d: dashboard %+v, /status %+v", i, d, u)
		}
	}
}

func get(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}
