package app

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/testenv"
)

// skopeoCopy copies ref (every platform) through the mirror into a dir:
// layout and returns skopeo's error output ("" when it succeeded).
func skopeoCopy(t *testing.T, skopeo, ref string) string {
	t.Helper()
	policyJSON := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policyJSON, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(skopeo, "--policy", policyJSON, "copy", "--all", "--src-tls-verify=false", "--src-no-creds",
		"docker://"+ref, "dir:"+filepath.Join(t.TempDir(), "img"))
	cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return ""
	}
	return string(out) + err.Error()
}

// TestPolicyCosignDistribution: images in Debian's docker-registry
// (Distribution 2.8, no referrers API) signed by the real cosign CLI with
// a generated key pair, pulled through the mirror with skopeo. Signed
// with the rule's key (an image, and an index with all its platforms):
// served. Signed with another key, or the tag moved to an unsigned digest:
// denied, with the rule in skopeo's error. cosign verify through the
// mirror finds the signatures. With the upstream stopped, the verified
// index still pulls, decided again from the cached signature after a
// policy reload, and the one signed with another key is still denied.
func TestPolicyCosignDistribution(t *testing.T) {
	testenv.RequireTool(t, "docker-registry")
	skopeo := testenv.RequireTool(t, "skopeo")
	cosign := testenv.NewCosign(t)
	up := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthNone})
	imgs := testenv.Seed(t, up.Host, nil)
	releaseKey, releasePub := cosign.KeyPair()
	otherKey, _ := cosign.KeyPair()
	cosign.Sign(releaseKey, imgs.Single.ByDigest(up.Host))
	cosign.Sign(releaseKey, imgs.OCIIndex.ByDigest(up.Host))
	cosign.Sign(otherKey, imgs.ManifestList.ByDigest(up.Host))

	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("rules:\n  - match: docker.io/library/*\n    verify:\n      any_of:\n        - cosign: {key: "+releasePub+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirrorLogged(t, map[string]string{"REGCACHE_POLICY_FILE": file, "REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_FRESHNESS": "1ms"}) // every tag pull asks the upstream: a moved tag is seen at once
	ref := func(img testenv.Image) string { return m.Host + "/" + img.Repo + ":" + img.Tag }
	const rule = "policy.rules[0] docker.io/library/*"

	if out := skopeoCopy(t, skopeo, ref(imgs.Single)); out != "" {
		t.Errorf("signed image: %s", out)
	}
	if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); out != "" {
		t.Errorf("signed index, every platform: %s", out)
	}
	if out := skopeoCopy(t, skopeo, ref(imgs.ManifestList)); !strings.Contains(out, "denied") || !strings.Contains(out, rule) || !strings.Contains(out, "does not verify") {
		t.Errorf("signed with another key: %q, want denied naming %s", out, rule)
	}
	if out, err := cosign.Verify(releasePub, m.Host+"/"+imgs.Single.Repo+"@"+string(imgs.Single.Digest)); err != nil {
		t.Errorf("cosign verify through the mirror: %v\n%s", err, out)
	}

	// The tag moved to an unsigned digest.
	moved, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	movedRef, err := name.NewTag(up.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(movedRef, moved); err != nil {
		t.Fatal(err)
	}
	movedDigest, _ := moved.Digest()
	if out := skopeoCopy(t, skopeo, ref(imgs.Single)); !strings.Contains(out, "denied") || !strings.Contains(out, rule) || !strings.Contains(out, "no signature found") {
		t.Errorf("tag moved to an unsigned digest: %q, want denied naming %s", out, rule)
	}
	if !strings.Contains(m.logs.String(), `"digest":"`+movedDigest.String()+`","decision":"deny"`) {
		t.Errorf("no audit line denies the moved tag's digest:\n%s", m.logs.String())
	}

	// The upstream stopped: the verified index pulls, and is verified
	// again from the cached signature once the policy is swapped.
	up.Stop()
	if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); out != "" {
		t.Errorf("verified index, upstream stopped: %s", out)
	}
	set, err := policy.Compile(m.App.config().Policy)
	if err != nil {
		t.Fatal(err)
	}
	m.App.content.SetPolicy(set) // as a SIGHUP does: every digest decided again
	if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); out != "" {
		t.Errorf("verified index, upstream stopped, decided again: %s", out)
	}
	if out := skopeoCopy(t, skopeo, ref(imgs.ManifestList)); !strings.Contains(out, rule) {
		t.Errorf("another key's signature, upstream stopped: %q", out)
	}
}

// TestPolicyCosignReferrers: signatures the real cosign CLI stores as OCI
// 1.1 referrers (--registry-referrers-mode=oci-1-1) in go-containerregistry's
// registry, which has the referrers API. Through the mirror with skopeo:
// every platform of an index signed with the rule's key pulls; an image
// signed with another key and an unsigned one are denied naming the rule.
// cosign verify --experimental-oci11 through the mirror finds the referrer
// (served without a decision: it is metadata about its subject).
func TestPolicyCosignReferrers(t *testing.T) {
	skopeo := testenv.RequireTool(t, "skopeo")
	cosign := testenv.NewCosign(t)
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	imgs := testenv.Seed(t, host, nil)
	releaseKey, releasePub := cosign.KeyPair()
	otherKey, _ := cosign.KeyPair()
	cosign.SignReferrer(releaseKey, imgs.OCIIndex.ByDigest(host))
	cosign.SignReferrer(otherKey, imgs.Single.ByDigest(host))

	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("default: verify\nverify:\n  any_of:\n    - cosign: {key: "+releasePub+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirrorLogged(t, map[string]string{"REGCACHE_POLICY_FILE": file, "REGCACHE_UPSTREAM_URL": srv.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	ref := func(img testenv.Image) string { return m.Host + "/" + img.Repo + ":" + img.Tag }
	if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); out != "" {
		t.Errorf("index signed with the rule's key, as a referrer: %s", out)
	}
	if out := skopeoCopy(t, skopeo, ref(imgs.Single)); !strings.Contains(out, "policy.default") || !strings.Contains(out, "does not verify") {
		t.Errorf("signed with another key, as a referrer: %q", out)
	}
	if out := skopeoCopy(t, skopeo, ref(imgs.ManifestList)); !strings.Contains(out, "policy.default") || !strings.Contains(out, "no signature found") {
		t.Errorf("unsigned: %q", out)
	}
	if out, err := cosign.Verify(releasePub, m.Host+"/"+imgs.OCIIndex.Repo+"@"+string(imgs.OCIIndex.Digest), "--experimental-oci11"); err != nil {
		t.Errorf("cosign verify --experimental-oci11 through the mirror: %v\n%s", err, out)
	}
}

// TestPolicyDockerd: dockerd pulling through the mirror. Named with the
// mirror's host, the mirror is the registry: an image signed by the real
// cosign CLI with the rule's key pulls, and an unsigned one fails with the
// rule in docker pull's error. Through registry-mirrors, dockerd takes the
// mirror's refusal as a mirror failure and falls back to Docker Hub (here
// into a dead proxy): the policy binds dockerd's Hub pulls only where the
// nodes cannot reach Docker Hub themselves (docs/policy.md says so).
func TestPolicyDockerd(t *testing.T) {
	testenv.RequireTool(t, "docker-registry")
	cosign := testenv.NewCosign(t)
	up := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthNone})
	imgs := testenv.Seed(t, up.Host, nil)
	key, pub := cosign.KeyPair()
	cosign.Sign(key, imgs.Single.ByDigest(up.Host))
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte("rules:\n  - match: docker.io/library/*\n    verify:\n      any_of:\n        - cosign: {key: "+pub+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirrorLogged(t, map[string]string{"REGCACHE_POLICY_FILE": file, "REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	d := testenv.StartDockerd(t, testenv.DockerdOptions{
		Config: fmt.Sprintf(`{"registry-mirrors": ["http://%s"], "insecure-registries": [%q]}`, m.Host, m.Host),
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if out, err := d.Docker(ctx, "pull", m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag); err != nil {
		t.Errorf("docker pull of the signed image: %v\n%s", err, out)
	}
	out, err := d.Docker(ctx, "pull", m.Host+"/"+imgs.ManifestList.Repo+":"+imgs.ManifestList.Tag)
	if err == nil || !strings.Contains(out, "denied by the mirror's pull policy (policy.rules[0] docker.io/library/*): no signature found") {
		t.Errorf("docker pull of an unsigned image: %v, want the rule in the error\n%s", err, out)
	}
	out, err = d.Docker(ctx, "pull", imgs.ManifestList.Repo+":"+imgs.ManifestList.Tag)
	if err == nil || !strings.Contains(out, "proxyconnect tcp: dial tcp 127.0.0.1:9") {
		t.Errorf("docker pull of an unsigned image through registry-mirrors: %v; want a fallback to Docker Hub (into the dead proxy)\n%s", err, out)
	}
}

// TestPolicyNotation: Notary Project signatures (JWS envelopes made with
// notation-core-go) in go-containerregistry's registry, found through the
// referrers API, and in Debian's docker-registry (Distribution 2.8, no
// referrers API), found through the referrers tag schema. Through the
// mirror with skopeo: every platform of an index signed by the trusted
// identity pulls; an image signed by another identity of the same CA and
// an unsigned one are denied naming the rule.
func TestPolicyNotation(t *testing.T) {
	skopeo := testenv.RequireTool(t, "skopeo")
	testenv.RequireTool(t, "docker-registry")
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dist := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthNone})
	for _, up := range []struct{ name, url, host string }{
		{"referrers API", srv.URL, srv.Listener.Addr().String()},
		{"referrers tag schema (Distribution 2.8)", dist.URL, dist.Host},
	} {
		t.Run(up.name, func(t *testing.T) {
			imgs := testenv.Seed(t, up.host, nil)
			ca := testenv.NewNotationCA(t)
			ca.Sign(t, up.host, imgs.OCIIndex, "release")
			ca.Sign(t, up.host, imgs.Single, "intern")
			file := filepath.Join(t.TempDir(), "policy.yaml")
			if err := os.WriteFile(file, []byte("rules:\n  - match: docker.io/library/*\n    verify:\n      any_of:\n        - notation: {trust_store: "+ca.StorePath+", identities: ['x509.subject: CN=release']}\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			m := startMirrorLogged(t, map[string]string{"REGCACHE_POLICY_FILE": file, "REGCACHE_UPSTREAM_URL": up.url, "REGCACHE_UPSTREAM_NAME": "docker.io"})
			ref := func(img testenv.Image) string { return m.Host + "/" + img.Repo + ":" + img.Tag }
			const rule = "policy.rules[0] docker.io/library/*"
			if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); out != "" {
				t.Errorf("index signed by the trusted identity: %s", out)
			}
			if out := skopeoCopy(t, skopeo, ref(imgs.Single)); !strings.Contains(out, rule) || !strings.Contains(out, "is by CN=intern, not a trusted identity") {
				t.Errorf("signed by another identity: %q", out)
			}
			if out := skopeoCopy(t, skopeo, ref(imgs.ManifestList)); !strings.Contains(out, rule) || !strings.Contains(out, "no signature found") {
				t.Errorf("unsigned: %q", out)
			}
			// The tag schema's index is served (clients that verify read
			// it), and unlocks nothing: it is a list of signatures.
			if code, body := pull(t, m.Host, imgs.Single.Repo, "sha256-"+imgs.Single.Digest.Encoded()); code != 200 {
				t.Errorf("the referrers tag schema's index through the mirror: %d %s", code, body)
			}
		})
	}
}
