package app

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/internal/testenv"
)

// pullCrane pulls ref through go-containerregistry, checks every byte
// (validate reads and hashes all blobs), and returns the manifest digest.
func pullCrane(t *testing.T, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("crane pull %s: %v", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatalf("crane pull %s: %v", ref, err)
		}
	} else {
		img, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatalf("crane pull %s: %v", ref, err)
		}
	}
	return desc.Digest.String()
}

// pullSkopeo copies ref (every platform, every blob verified by skopeo)
// into a dir: layout, and returns the digest of the manifest bytes the
// mirror serves for ref (skopeo inspect --raw). skopeo may re-encode an OCI
// index when it writes one, so the digest is taken from the raw answer.
func pullSkopeo(t *testing.T, skopeo, ref string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	run := func(args ...string) []byte {
		cmd := exec.Command(skopeo, append([]string{"--policy", policy}, args...)...)
		cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("skopeo %v: %v\n%s", args, err, stderr.String())
		}
		return []byte(stdout.String())
	}
	run("copy", "--all", "--src-tls-verify=false", "--src-no-creds", "docker://"+ref, "dir:"+dir)
	raw := run("inspect", "--raw", "--tls-verify=false", "--no-creds", "docker://"+ref)
	return fmt.Sprintf("sha256:%x", sha256.Sum256(raw))
}

// TestRealUpstream pulls every seeded image through regcache in front of
// Debian's docker-registry, with token auth and with htpasswd basic auth,
// using crane and skopeo, then again with the upstream stopped.
func TestRealUpstream(t *testing.T) {
	testenv.RequireTool(t, "docker-registry")
	skopeo := testenv.RequireTool(t, "skopeo")
	for _, mode := range []struct {
		name string
		auth testenv.Auth
	}{{"token", testenv.AuthToken}, {"htpasswd", testenv.AuthHtpasswd}} {
		t.Run(mode.name, func(t *testing.T) {
			up := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: mode.auth})
			opts := []testenv.SeedOption{}
			if mode.auth == testenv.AuthToken && !testing.Short() {
				opts = append(opts, testenv.WithBigImage(0))
			}
			imgs := testenv.Seed(t, up.Host, &authn.Basic{Username: up.Username, Password: up.Password}, opts...)
			env := map[string]string{
				"REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
				"REGCACHE_USERNAME": up.Username, "REGCACHE_PASSWORD": up.Password,
				"REGCACHE_FRESHNESS": "1ms", // every later tag pull asks upstream: stale serving is exercised
			}
			if mode.auth == testenv.AuthHtpasswd {
				// An htpasswd upstream serves nothing anonymously, so under the
				// default access.private=deny everything is private; this is
				// the guide's set-up, which opts in to serving it.
				env["REGCACHE_PRIVATE"] = "allow"
			}
			m := startMirror(t, env)
			all := []testenv.Image{imgs.Single, imgs.ManifestList, imgs.OCIIndex}
			if imgs.Big != nil {
				all = append(all, *imgs.Big)
			}
			check := func(phase string) {
				for _, img := range all {
					ref := m.Host + "/" + img.Repo + ":" + img.Tag
					if got := pullCrane(t, ref); got != string(img.Digest) {
						t.Errorf("%s: crane %s digest %s, upstream %s", phase, ref, got, img.Digest)
					}
					if got := pullSkopeo(t, skopeo, ref); got != string(img.Digest) {
						t.Errorf("%s: skopeo %s digest %s, upstream %s", phase, ref, got, img.Digest)
					}
					if got := pullCrane(t, m.Host+"/"+img.Repo+"@"+string(img.Digest)); got != string(img.Digest) {
						t.Errorf("%s: by digest: %s", phase, got)
					}
				}
				// Docker Hub's implicit library/ for one-segment names.
				one := strings.TrimPrefix(imgs.Single.Repo, "library/")
				if got := pullCrane(t, m.Host+"/"+one+":"+imgs.Single.Tag); got != string(imgs.Single.Digest) {
					t.Errorf("%s: one-segment name: %s", phase, got)
				}
			}
			check("cold")
			// A repository that does not exist is an honest 404 (containerd
			// falls back to the next host only on a 404), not a refusal.
			status, body, err := get(t, "http://"+m.Host+"/v2/library/does-not-exist/manifests/latest")
			if err != nil || status != 404 {
				t.Errorf("missing repository: %d %v %s", status, err, body)
			}
			up.Stop()
			check("upstream stopped")
		})
	}
}

// TestDockerHubLike pulls through a Docker Hub stand-in: token realm on
// another host name, rate-limit headers, blobs redirected to a CDN that
// rejects Authorization.
func TestDockerHubLike(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetCredentials("me", "hub-secret")
	imgs := hub.Seed(t)
	m := startMirror(t, map[string]string{
		"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": "me", "REGCACHE_PASSWORD": "hub-secret",
	})
	for _, img := range []testenv.Image{imgs.Single, imgs.ManifestList, imgs.OCIIndex} {
		ref := m.Host + "/" + img.Repo + ":" + img.Tag
		if got := pullCrane(t, ref); got != string(img.Digest) {
			t.Errorf("%s: digest %s, want %s", ref, got, img.Digest)
		}
	}
	if n := hub.Count("GET", testenv.KindCDN); n == 0 {
		t.Error("no blob came through the CDN redirect")
	}
	for _, r := range hub.Requests() {
		if r.Kind == testenv.KindCDN && (r.Auth || r.Status >= 400) {
			t.Errorf("CDN request %s carried auth %v / status %d", r.Path, r.Auth, r.Status)
		}
	}
	// The mirror's own (credentialed) client: one token per repository.
	// (The access policy's anonymous public-repository checks fetch their
	// own anonymous tokens, counted separately at the hub.)
	if n, repos := m.App.Status().Upstreams[0].TokenRequests, int64(3); n > repos+1 {
		t.Errorf("%d token requests for %d repositories: tokens are not cached per scope", n, repos)
	}
	st := m.App.Status()
	if rl := st.Upstreams[0].RateLimit; rl.Limit == 0 || rl.Remaining == 0 {
		t.Errorf("rate limit not recorded: %+v", rl)
	}
}
