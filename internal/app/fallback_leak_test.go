package app

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/testenv"
)

// chainEnv is two Docker Hub stand-ins: docker.io (anonymous) and
// member.test, the fallback member of docker.io's chain, with the same
// library/ images.
type chainEnv struct {
	primary, member *testenv.Hub
	imgs            testenv.Images
	m               *running
}

// newChainEnv starts the two stand-ins and a mirror whose docker.io falls
// back to member.test; memberYAML is added to member.test's entry, extra
// to the file's end.
func newChainEnv(t *testing.T, memberYAML, extra string, env map[string]string) *chainEnv {
	t.Helper()
	e := &chainEnv{primary: testenv.NewHub(t), member: testenv.NewHub(t)}
	e.imgs = e.primary.Seed(t)
	if same := e.member.Seed(t); same.Single.Digest != e.imgs.Single.Digest {
		t.Fatal("the two stand-ins hold different images")
	}
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := fmt.Sprintf("upstreams:\n  - name: docker.io\n    url: %s\n    fallback: [member.test]\n  - name: member.test\n    url: %s\n    trusted_tags: true\n%s%s",
		e.primary.URL, e.member.URL, memberYAML, extra)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_FRESHNESS": "1ms", "REGCACHE_PREFETCH": "false"}
	for k, v := range env {
		all[k] = v
	}
	e.m = startMirror(t, all)
	return e
}

// rateLimitPrimary spends docker.io's manifest budget for a second, so
// manifest GETs fall back to the member.
func (e *chainEnv) rateLimitPrimary() {
	e.primary.SetRetryAfter(time.Second)
	e.primary.SetRateLimit(100, 0)
}

// TestFallbackCredentialedMemberIsPrivate: docker.io is anonymous, its
// fallback member reads with credentials and holds a private repository,
// access.private is deny. While docker.io answers 503 or 429, an anonymous
// client gets neither the private manifest nor its layer (the chain is
// decided against its credentialed member), and still gets the public
// images the member serves anonymously.
func TestFallbackCredentialedMemberIsPrivate(t *testing.T) {
	e := newChainEnv(t, "    username: me\n    password: member-secret\n", "access:\n  private: deny\n", nil)
	e.member.SetCredentials("me", "member-secret")
	secret := e.member.Seed(t, testenv.WithPrefix("myorg/"), testenv.WithSeed(9))
	e.member.SetPrivate(secret.Single.Repo, true)
	base := "http://" + e.m.Host + "/v2/"

	for _, fail := range []string{"503", "429"} {
		if fail == "503" {
			e.primary.Fail(testenv.KindManifest, http.StatusServiceUnavailable)
			e.primary.Fail(testenv.KindBlob, http.StatusServiceUnavailable)
		} else {
			e.primary.Fail(testenv.KindManifest, 0)
			e.primary.Fail(testenv.KindBlob, 0)
			e.rateLimitPrimary()
		}
		for _, path := range []string{
			secret.Single.Repo + "/manifests/" + secret.Single.Tag,
			secret.Single.Repo + "/manifests/" + string(secret.Single.Digest),
			secret.Single.Repo + "/blobs/" + string(secret.Single.Layers[0].Digest),
		} {
			status, body, err := get(t, base+path)
			if err != nil {
				t.Fatal(err)
			}
			if status == http.StatusOK || !strings.Contains(string(body), "DENIED") {
				t.Errorf("docker.io %s, anonymous GET %s: %d %.200s; want DENIED", fail, path, status, body)
			}
		}
	}
	// Public content of the member still comes through for anyone.
	single := e.imgs.Single
	if got, err := tryCrane(e.m.Host + "/" + single.Repo + ":" + single.Tag); err != nil || got != string(single.Digest) {
		t.Fatalf("docker.io rate limited, public image through the credentialed member: %s %v", got, err)
	}
}

// TestFallbackRefusalIsAnAnswer: a tag the member gave while docker.io was
// rate limited is not served as stale once docker.io refuses the
// repository (401): that is docker.io's answer, not an outage. What the
// member showed is recorded as the member's holdings, not docker.io's.
func TestFallbackRefusalIsAnAnswer(t *testing.T) {
	e := newChainEnv(t, "", "", nil)
	single := e.imgs.Single
	ref := e.m.Host + "/" + single.Repo + ":" + single.Tag
	e.rateLimitPrimary()
	if got, err := tryCrane(ref); err != nil || got != string(single.Digest) {
		t.Fatalf("docker.io rate limited, by tag through the member: %s %v", got, err)
	}
	// (docker.io's blob HEADs, not rate limited, answered for the blobs.)
	if held, _ := e.m.App.index.Holds(t.Context(), "docker.io", single.Repo, single.Digest); held {
		t.Errorf("docker.io recorded as holding the manifest only the member showed")
	}
	for _, d := range []digest.Digest{single.Digest, single.Config.Digest, single.Layers[0].Digest} {
		if held, _ := e.m.App.index.Holds(t.Context(), "member.test", single.Repo, d); !held {
			t.Errorf("member.test not recorded as holding %s", d)
		}
	}
	time.Sleep(1100 * time.Millisecond) // docker.io's Retry-After
	e.primary.SetRateLimit(100, 100)
	e.primary.Fail(testenv.KindManifest, http.StatusUnauthorized)
	status, body, err := get(t, "http://"+e.m.Host+"/v2/"+single.Repo+"/manifests/"+single.Tag)
	if err != nil {
		t.Fatal(err)
	}
	if status == http.StatusOK {
		t.Fatalf("docker.io answers 401: the member's tag was served (stale) anyway: %d %.200s", status, body)
	}
}

// TestFallbackReserveNeverFallsBack: a background pull refused by the
// local budget reserve (docker.io at its last 5 counted pulls) gets the
// 429; the member is not asked in docker.io's place.
func TestFallbackReserveNeverFallsBack(t *testing.T) {
	e := newChainEnv(t, "", "", map[string]string{"REGCACHE_BUDGET_RESERVE": "5"})
	e.primary.SetRateLimit(10, 6)
	warm := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.m.Host+path, nil)
		req.Header.Set(mirror.BackgroundHeader, "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := warm("/v2/" + e.imgs.Single.Repo + "/manifests/" + e.imgs.Single.Tag); code != 200 {
		t.Fatalf("warm with budget left: %d", code)
	}
	e.member.ResetCounters()
	if code := warm("/v2/" + e.imgs.OCIIndex.Repo + "/manifests/" + e.imgs.OCIIndex.Tag); code != http.StatusTooManyRequests {
		t.Fatalf("warm at the reserve: %d, want 429", code)
	}
	if n := e.member.Count("", testenv.KindManifest); n != 0 {
		t.Errorf("the reserve's refusal fell back: member.test got %d manifest requests", n)
	}
}

// TestFallbackMemberVouchesForNothing: docker.io is credentialed and holds
// a private repository whose layer is cached; its blob HEADs fail with
// 503, and its fallback member answers 200 to any blob HEAD (and serves
// no bytes). An anonymous client asking for the private layer under a
// public repository's name does not get it, and docker.io is not recorded
// as holding it there.
func TestFallbackMemberVouchesForNothing(t *testing.T) {
	primary := testenv.NewHub(t)
	primary.SetCredentials("me", "hub-secret")
	imgs := primary.Seed(t)
	secret := primary.Seed(t, testenv.WithPrefix("myorg/"), testenv.WithSeed(9))
	primary.SetPrivate(secret.Single.Repo, true)
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
			w.Header().Set("Content-Length", "100")
			w.Header().Set("Docker-Content-Digest", r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
			return
		}
		if r.URL.Path == "/v2/" {
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(liar.Close)
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := fmt.Sprintf("upstreams:\n  - name: docker.io\n    url: %s\n    username: me\n    password: hub-secret\n    fallback: [liar.test]\n  - name: liar.test\n    url: %s\naccess:\n  private: allow\n",
		primary.URL, liar.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_PREFETCH": "false"})
	// Under private: allow the private image is pulled, so its layer is
	// cached with docker.io as its origin; then the policy becomes deny.
	if got, err := tryCrane(m.Host + "/" + secret.Single.Repo + ":" + secret.Single.Tag); err != nil || got != string(secret.Single.Digest) {
		t.Fatalf("private image under private: allow: %s %v", got, err)
	}
	next := m.App.config()
	next.Access.Private = "deny"
	if _, _, err := m.App.Reload(next); err != nil {
		t.Fatal(err)
	}
	layer := secret.Single.Layers[0].Digest
	primary.Fail(testenv.KindBlob, http.StatusServiceUnavailable)
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, _ := http.NewRequest(method, "http://"+m.Host+"/v2/"+imgs.Single.Repo+"/blobs/"+string(layer), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s of the private layer under %s, vouched for by the member: 200", method, imgs.Single.Repo)
		}
	}
	if held, _ := m.App.index.Holds(t.Context(), "docker.io", imgs.Single.Repo, layer); held {
		t.Error("docker.io recorded as holding the private layer on the member's word")
	}
}

// TestFallbackNamesHidden: with a credentialed member in docker.io's
// chain and an admin token, neither /status (fallback.lastCause names the
// repository) nor the dashboard names docker.io's repositories to a caller
// without the token; with it, both do.
func TestFallbackNamesHidden(t *testing.T) {
	const token = "admin-token-0123456789abcdef"
	e := newChainEnv(t, "    username: me\n    password: member-secret\n", "access:\n  private: allow\n",
		map[string]string{"REGCACHE_ADMIN_TOKEN": token})
	e.member.SetCredentials("me", "member-secret")
	single := e.imgs.Single
	e.rateLimitPrimary()
	if got, err := tryCrane(e.m.Host + "/" + single.Repo + ":" + single.Tag); err != nil || got != string(single.Digest) {
		t.Fatalf("docker.io rate limited, through the member: %s %v", got, err)
	}
	if st := e.m.App.Status().Upstreams[0].Fallback; st == nil || !strings.Contains(st.LastCause, single.Repo) {
		t.Fatalf("the fallback's last cause does not name the repository (nothing to hide): %+v", st)
	}
	admin := e.m.App.AdminHandler()
	for _, path := range []string{"/status", "/dashboard.json"} {
		_, body := adminGet(t, admin, path, "")
		if strings.Contains(body, single.Repo) {
			t.Errorf("%s without the token names %s: %.300s", path, single.Repo, body)
		}
		var withToken string
		waitFor(t, path+" with the token names the repository", func() bool {
			_, withToken = adminGet(t, admin, path, token)
			return strings.Contains(withToken, single.Repo)
		})
	}
}
