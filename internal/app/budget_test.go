package app

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/testenv"
)

// TestBudgetReserveWarmAndCI: with the stand-in's budget at 10 and
// budget_reserve 50%, background requests (X-Regcache-Background: 1, as
// regcache warm sends them, here from a plain HTTP client) pull until 5
// counted pulls are left and then get 429 saying the reserve is kept; a CI
// client (crane) still pulls an uncached image, spending the reserve.
func TestBudgetReserveWarmAndCI(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.SetRateLimit(10, 10)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_BUDGET_RESERVE": "50%", "REGCACHE_PREFETCH": "false"})
	warm := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+m.Host+path, nil)
		req.Header.Set(mirror.BackgroundHeader, "1")
		req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	paths := []string{"/v2/" + imgs.Single.Repo + "/manifests/" + imgs.Single.Tag,
		"/v2/" + imgs.ManifestList.Repo + "/manifests/" + imgs.ManifestList.Tag}
	for _, p := range imgs.ManifestList.Platforms {
		paths = append(paths, "/v2/"+imgs.ManifestList.Repo+"/manifests/"+string(p.Digest))
	}
	paths = append(paths, "/v2/"+imgs.OCIIndex.Repo+"/manifests/"+imgs.OCIIndex.Tag)
	for _, p := range paths { // 10 → 5 left
		if code, body := warm(p); code != 200 {
			t.Fatalf("warm %s with budget left: %d %s", p, code, body)
		}
	}
	if left := hub.RateLimitRemaining(); left != 5 {
		t.Fatalf("%d pulls left after warming, want 5", left)
	}
	child := imgs.OCIIndex.Platforms[0]
	code, body := warm("/v2/" + imgs.OCIIndex.Repo + "/manifests/" + string(child.Digest))
	if code != 429 || !strings.Contains(body, "kept for other clients") {
		t.Fatalf("warm at the reserve: %d %s", code, body)
	}
	if left := hub.RateLimitRemaining(); left != 5 {
		t.Fatalf("the refused warm pull spent the reserve: %d left", left)
	}
	// go-containerregistry (crane's library) sending the header gets the
	// same 429, as its transport error.
	bgRef, err := name.ParseReference(m.Host+"/"+imgs.OCIIndex.Repo+"@"+string(child.Digest), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Get(bgRef, remote.WithTransport(headerTransport{mirror.BackgroundHeader, "1", http.DefaultTransport}))
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusTooManyRequests || !strings.Contains(err.Error(), "kept for other clients") {
		t.Fatalf("background pull by go-containerregistry at the reserve: %v", err)
	}
	if st := m.App.Status().Upstreams[0]; st.BudgetReserve != 5 {
		t.Errorf("/status budgetReserve %d, want 5", st.BudgetReserve)
	}
	// CI pulls the index, whose platform manifests are not cached.
	ref := m.Host + "/" + imgs.OCIIndex.Repo + ":" + imgs.OCIIndex.Tag
	if got := pullCrane(t, ref); got != string(imgs.OCIIndex.Digest) {
		t.Fatalf("CI pull at the reserve: %s", got)
	}
	if left := hub.RateLimitRemaining(); left >= 5 {
		t.Errorf("the CI pull spent no counted pull (%d left): it was not what was tested", left)
	}
	if n := metricValue(t, m, `regcache_budget_reserve_refusals_total{upstream="docker.io"}`); n < 2 {
		t.Errorf("refusals counted: %v, want one per refused request (go-containerregistry retries a 429)", n)
	}
}

// headerTransport adds one header to every request.
type headerTransport struct {
	key, value string
	base       http.RoundTripper
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.key, h.value)
	return h.base.RoundTrip(r)
}
