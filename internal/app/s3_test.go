package app

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

// TestS3ReadyAndScrub: on S3 (the suite's engine), a fresh replica is
// ready before anything is stored; the scrub, set only by
// REGCACHE_SCRUB_INTERVAL, finds a byte flipped in the bucket behind the
// mirror's back, moves the object under quarantine/, drops it from the
// index, and the next request fetches good bytes again.
func TestS3ReadyAndScrub(t *testing.T) {
	s3 := testenv.NewS3(t)
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_PREFETCH": "false", "REGCACHE_SCRUB_INTERVAL": "2s", "REGCACHE_SCRUB_RATE": "1GiB",
		"REGCACHE_S3_ENDPOINT": s3.Endpoint, "REGCACHE_S3_BUCKET": s3.Bucket, "REGCACHE_S3_REGION": s3.Region,
		"REGCACHE_S3_ACCESS_KEY": s3.AccessKey, "REGCACHE_S3_SECRET_KEY": s3.SecretKey, "REGCACHE_S3_PATH_STYLE": "true"})
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a fresh S3 replica: /readyz %d, want 200", resp.StatusCode)
	}

	single := imgs.Single
	pullCrane(t, m.Host+"/"+single.Repo+":"+single.Tag)
	waitBlobs(t, m.App, int64(len(single.Blobs())))
	victim := single.Layers[0].Digest
	obj := filepath.Join(s3.Dir, s3.Bucket, "blobs", "sha256", victim.Encoded()[:2], victim.Encoded())
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(obj, b, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(m.App.scrub.Status().Damaged) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := m.App.scrub.Status(); len(st.Damaged) != 1 || st.Damaged[0] != victim {
		t.Fatalf("scrub status %+v, want %s damaged", st, victim)
	}
	c := s3.Client(t)
	if _, err := c.StatObject(t.Context(), s3.Bucket, "quarantine/sha256-"+victim.Encoded(), minio.StatObjectOptions{}); err != nil {
		t.Errorf("not quarantined in the bucket: %v", err)
	}
	if _, ok, _ := m.App.index.Blob(t.Context(), victim); ok {
		t.Error("the damaged blob is still indexed")
	}
	s, body, err := get(t, "http://"+m.Host+"/v2/"+single.Repo+"/blobs/"+victim.String())
	if err != nil || s != 200 || digest.FromBytes(body) != victim {
		t.Errorf("the damaged blob after the scrub: %d %v, body hashes to %s", s, err, digest.FromBytes(body))
	}
}
