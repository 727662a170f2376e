package app

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/internal/testenv"
)

// fallbackEnv is the Docker Hub stand-in as docker.io, Debian's
// docker-registry (Distribution 2.8) as fallback.test holding the same
// images, and a mirror whose docker.io falls back to fallback.test.
type fallbackEnv struct {
	hub  *testenv.Hub
	dist *testenv.Distribution
	imgs testenv.Images
	m    *running
}

func newFallbackEnv(t *testing.T, trustedTags bool) *fallbackEnv {
	t.Helper()
	testenv.RequireTool(t, "docker-registry")
	hub := testenv.NewHub(t)
	dist := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthNone})
	imgs := hub.Seed(t)
	same := testenv.Seed(t, dist.Host, nil)
	for _, p := range [][2]testenv.Image{{imgs.Single, same.Single}, {imgs.ManifestList, same.ManifestList}, {imgs.OCIIndex, same.OCIIndex}} {
		if p[0].Digest != p[1].Digest {
			t.Fatalf("the two registries hold different %s: %s and %s", p[0].Repo, p[0].Digest, p[1].Digest)
		}
	}
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := fmt.Sprintf(`upstreams:
  - name: docker.io
    url: %s
    fallback: [fallback.test]
  - name: fallback.test
    url: %s
    trusted_tags: %v
`, hub.URL, dist.URL, trustedTags)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_FRESHNESS": "1ms"})
	return &fallbackEnv{hub: hub, dist: dist, imgs: imgs, m: m}
}

// tryCrane pulls ref through go-containerregistry, hashing every blob,
// and returns the manifest digest or the error.
func tryCrane(ref string) (string, error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(r)
	if err != nil {
		return "", err
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = validate.Index(idx)
		}
		return desc.Digest.String(), err
	}
	img, err := desc.Image()
	if err == nil {
		err = validate.Image(img)
	}
	return desc.Digest.String(), err
}

// TestFallbackTrusted: docker.io rate-limited, then down → pulls by tag
// and by digest are answered by the trusted fallback with the same
// digests (crane and skopeo), counted in /status and the metrics; once
// docker.io is back, its own tags win over what the fallback said.
func TestFallbackTrusted(t *testing.T) {
	skopeo := testenv.RequireTool(t, "skopeo")
	e := newFallbackEnv(t, true)
	host := e.m.Host

	// A spent budget: manifest GETs are 429 at docker.io (for a second).
	e.hub.SetRetryAfter(time.Second)
	e.hub.SetRateLimit(100, 0)
	single := e.imgs.Single
	if got, err := tryCrane(host + "/" + single.Repo + ":" + single.Tag); err != nil || got != string(single.Digest) {
		t.Fatalf("rate-limited docker.io, by tag: %s %v, want %s", got, err, single.Digest)
	}
	e.hub.SetRateLimit(100, 100)

	e.hub.Down()
	for _, img := range []testenv.Image{e.imgs.ManifestList, e.imgs.OCIIndex} {
		ref := host + "/" + img.Repo + ":" + img.Tag
		if got, err := tryCrane(ref); err != nil || got != string(img.Digest) {
			t.Errorf("docker.io down, crane by tag %s: %s %v", ref, got, err)
		}
		if got := pullSkopeo(t, skopeo, ref); got != string(img.Digest) {
			t.Errorf("docker.io down, skopeo by tag %s: %s", ref, got)
		}
		for _, p := range img.Platforms {
			if got, err := tryCrane(host + "/" + img.Repo + "@" + string(p.Digest)); err != nil || got != string(p.Digest) {
				t.Errorf("docker.io down, by digest %s: %s %v", p.Digest, got, err)
			}
		}
	}
	st := e.m.App.Status().Upstreams[0]
	if st.Fallback == nil || st.Fallback.Served == 0 || st.Fallback.LastMember != "fallback.test" {
		t.Fatalf("/status fallback: %+v", st.Fallback)
	}
	if n := metricValue(t, e.m, `regcache_fallback_requests_total{kind="tag",member="fallback.test",result="served",upstream="docker.io"}`); n < 3 {
		t.Errorf("tag fallbacks counted: %v, want at least 3", n)
	}

	// docker.io is back with other images under the same tags: its answer
	// replaces the fallback's.
	e.hub.Up()
	moved := e.hub.Seed(t, testenv.WithSeed(7))
	want := moved.ManifestList
	if want.Digest == e.imgs.ManifestList.Digest {
		t.Fatal("reseeding did not move the tag")
	}
	ref := host + "/" + want.Repo + ":" + want.Tag
	var got string
	for deadline := time.Now().Add(20 * time.Second); got != string(want.Digest) && time.Now().Before(deadline); {
		got, _ = tryCrane(ref) // the first may still meet the open breaker and get the fallback's tag
		if got != string(want.Digest) {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if got != string(want.Digest) {
		t.Fatalf("docker.io back: %s serves %s, docker.io says %s", ref, got, want.Digest)
	}
	if got := pullSkopeo(t, skopeo, ref); got != string(want.Digest) {
		t.Errorf("docker.io back, skopeo: %s", got)
	}
}

// TestFallbackUntrusted: a fallback not trusted for tags serves content
// by digest (checked) while docker.io answers 503 and while it is down,
// but never a tag.
func TestFallbackUntrusted(t *testing.T) {
	e := newFallbackEnv(t, false)
	host := e.m.Host
	// docker.io answers 503 for manifests: the single image's manifest by
	// digest comes from the fallback, its tag does not.
	e.hub.Fail(testenv.KindManifest, http.StatusServiceUnavailable)
	single := e.imgs.Single
	if got, err := tryCrane(host + "/" + single.Repo + ":" + single.Tag); err == nil {
		t.Fatalf("docker.io 503: an untrusted fallback served the tag (%s)", got)
	}
	if got, err := tryCrane(host + "/" + single.Repo + "@" + string(single.Digest)); err != nil || got != string(single.Digest) {
		t.Fatalf("docker.io 503, by digest: %s %v", got, err)
	}
	e.hub.Fail(testenv.KindManifest, 0)
	e.hub.Down()
	img := e.imgs.ManifestList
	if got, err := tryCrane(host + "/" + img.Repo + ":" + img.Tag); err == nil {
		t.Fatalf("an untrusted fallback served the tag (%s)", got)
	}
	for _, p := range append([]testenv.Image{img}, img.Platforms...) {
		if got, err := tryCrane(host + "/" + img.Repo + "@" + string(p.Digest)); err != nil || got != string(p.Digest) {
			t.Errorf("docker.io down, by digest %s: %s %v", p.Digest, got, err)
		}
	}
	st := e.m.App.Status().Upstreams[0]
	if st.Fallback == nil || st.Fallback.TrustedTags || st.Fallback.Served == 0 {
		t.Errorf("/status fallback: %+v", st.Fallback)
	}
	if n := metricValue(t, e.m, `regcache_fallback_requests_total{kind="tag",member="fallback.test",result="served",upstream="docker.io"}`); n != 0 {
		t.Errorf("tag fallbacks to an untrusted member: %v", n)
	}
	if b, _ := json.Marshal(st); !strings.Contains(string(b), `"fallback":{"chain":["fallback.test"]`) {
		t.Errorf("/status JSON: %s", b)
	}
}

// metricValue reads one sample of the mirror's metrics (0 if absent).
func metricValue(t *testing.T, m *running, sample string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.App.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}
