package app

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// TestClusterSeenInStatus: a replica's view of its cluster is in /status
// (itself among the live replicas, the set read from Redis); with Redis
// stopped the set is the last one read, which /status says and which is
// a degraded reason until Redis is back.
func TestClusterSeenInStatus(t *testing.T) {
	s3, rd, hub := testenv.NewS3(t), testenv.NewRedis(t), testenv.NewHub(t)
	const self = "http://127.0.0.1:1"
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_S3_ENDPOINT": s3.Endpoint, "REGCACHE_S3_BUCKET": s3.Bucket, "REGCACHE_S3_REGION": s3.Region,
		"REGCACHE_S3_ACCESS_KEY": s3.AccessKey, "REGCACHE_S3_SECRET_KEY": s3.SecretKey, "REGCACHE_S3_PATH_STYLE": "true",
		"REGCACHE_CLUSTER_REDIS": rd.URL, "REGCACHE_CLUSTER_ADVERTISE": self, "REGCACHE_CLUSTER_SECRET": "cluster-view-secret-0123456789"})
	wait := func(what string, ok func(admin.Status) bool) admin.Status {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			st := m.App.Status()
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /status cluster %+v, degraded %q", what, st.Cluster, st.Degraded)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	untrusted := func(st admin.Status) bool { return slices.Contains(st.Reasons, admin.ReasonUntrusted) }
	st := wait("joined", func(st admin.Status) bool {
		return st.Cluster != nil && st.Cluster.Trusted && slices.Contains(st.Cluster.Live, self)
	})
	if st.Cluster.Self != self || untrusted(st) {
		t.Errorf("a joined replica: %+v, reasons %q", st.Cluster, st.Reasons)
	}
	rd.Stop()
	st = wait("Redis stopped", func(st admin.Status) bool { return st.Cluster != nil && !st.Cluster.Trusted && untrusted(st) })
	if !slices.Contains(st.Cluster.Live, self) || !strings.Contains(strings.Join(st.Degraded, "\n"), "Redis cannot be reached") {
		t.Errorf("with Redis stopped: %+v, degraded %q", st.Cluster, st.Degraded)
	}
	w := httptest.NewRecorder()
	m.App.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, ui.PathData, nil))
	var dash ui.Snapshot
	if err := json.Unmarshal(w.Body.Bytes(), &dash); err != nil || !strings.Contains(dash.Cache.Cluster, "Redis cannot be reached") {
		t.Errorf("the dashboard's cluster line with Redis stopped: %q (%v)", dash.Cache.Cluster, err)
	}
	rd.Start()
	wait("Redis back", func(st admin.Status) bool { return st.Cluster != nil && st.Cluster.Trusted && !untrusted(st) })
}
