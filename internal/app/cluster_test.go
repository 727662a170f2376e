package app

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/testenv"
)

// TestClusterMetrics: a replica's view of the cluster is in its metrics:
// the replicas it takes as live, whether that set came from Redis, and
// the leases it holds. With Redis stopped the last set read is kept (and
// said to be untrusted), instead of shrinking to the replica itself.
func TestClusterMetrics(t *testing.T) {
	rs := testenv.NewRedis(t)
	s3 := testenv.NewS3(t)
	hub := testenv.NewHub(t)
	opts, err := redis.ParseURL(rs.URL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	// Another replica, heartbeating (its beat dated an hour ahead).
	if err := rdb.ZAdd(t.Context(), "regcache:cluster:members", redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "http://127.0.0.1:9"}).Err(); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_PREFETCH": "false",
		"REGCACHE_S3_ENDPOINT": s3.Endpoint, "REGCACHE_S3_BUCKET": s3.Bucket, "REGCACHE_S3_REGION": s3.Region,
		"REGCACHE_S3_ACCESS_KEY": s3.AccessKey, "REGCACHE_S3_SECRET_KEY": s3.SecretKey, "REGCACHE_S3_PATH_STYLE": "true",
		"REGCACHE_CLUSTER_REDIS": rs.URL, "REGCACHE_CLUSTER_ADVERTISE": "http://127.0.0.1:8", "REGCACHE_CLUSTER_SECRET": "a-cluster-secret-of-some-length"})
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()
	wait := func(what string, ok func(scrape) bool) scrape {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			s := scrapeMetrics(t, admin.URL)
			if ok(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: replicas_live %v, membership_trusted %v", what, s.value("regcache_cluster_replicas_live"), s.value("regcache_cluster_membership_trusted"))
			}
		}
	}
	wait("with Redis up", func(s scrape) bool {
		return s.value("regcache_cluster_replicas_live") == 2 && s.value("regcache_cluster_membership_trusted") == 1 &&
			s["regcache_cluster_leases_held"] != nil
	})
	rs.Stop()
	s := wait("with Redis stopped", func(s scrape) bool { return s.value("regcache_cluster_membership_trusted") == 0 })
	if n := s.value("regcache_cluster_replicas_live"); n != 2 {
		t.Errorf("with Redis stopped: %v replicas live, want the last known 2", n)
	}
}
