package app

import (
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/internal/testenv"
)

// TestPolicySigstoreBundles: Sigstore bundles stored as OCI 1.1 referrers
// (as cosign sign --new-bundle-format writes them), in go-containerregistry's
// registry (found through the referrers API) and in Debian's
// docker-registry (Distribution 2.8, no referrers API: found through the
// referrers tag schema). Keyless bundles are signed by a test Sigstore
// instance (sigstore-go's testing CA: Fulcio, Rekor, a timestamp
// authority) whose trusted root the rule reads from a file, and so are
// keyless signatures of cosign's older tag scheme (sha256-<hex>.sig, the
// certificate and Rekor entry in the layer's annotations); a keyed bundle
// is signed by the real cosign CLI (--new-bundle-format --key
// --tlog-upload=false). Through the mirror with skopeo: an index signed by
// the rule's identity (in a bundle, or in the tag scheme) pulls with every
// platform, and so does the image cosign signed with the rule's key;
// another identity (in either), another issuer, a
// bundle of another digest and a tag moved to an unsigned digest are
// denied, naming the rule. In audit mode the image of another identity is
// served and logged as would_deny.
func TestPolicySigstoreBundles(t *testing.T) {
	skopeo := testenv.RequireTool(t, "skopeo")
	testenv.RequireTool(t, "docker-registry")
	cosign := testenv.NewCosign(t)
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.WithReferrersSupport(true), ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	dist := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthNone})
	const (
		release = "https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1.0.0"
		issuer  = "https://token.actions.githubusercontent.com"
		rule    = "policy.rules[0] docker.io/**"
	)
	for _, up := range []struct{ name, url, host string }{
		{"referrers API", srv.URL, srv.Listener.Addr().String()},
		{"referrers tag schema (Distribution 2.8)", dist.URL, dist.Host},
	} {
		t.Run(up.name, func(t *testing.T) {
			imgs := testenv.Seed(t, up.host, nil)
			team := testenv.Seed(t, up.host, nil, testenv.WithPrefix("team/"), testenv.WithSeed(2))
			ss := testenv.NewSigstore(t)
			signed := func(d testenv.Image) []byte { return testenv.Statement(d.Digest, testenv.CosignSignPredicate) }
			testenv.PushBundle(t, up.host, imgs.OCIIndex, ss.Bundle(t, release, issuer, signed(imgs.OCIIndex)))
			testenv.PushBundle(t, up.host, imgs.Single, ss.Bundle(t, "https://github.com/myorg/app/.github/workflows/test.yml@refs/heads/main", issuer, signed(imgs.Single)))
			testenv.PushBundle(t, up.host, imgs.ManifestList, ss.Bundle(t, release, "https://accounts.google.com", signed(imgs.ManifestList)))
			testenv.PushBundle(t, up.host, team.Single, ss.Bundle(t, release, issuer, signed(team.OCIIndex)))
			// Keyless signatures of cosign's tag scheme (sha256-<hex>.sig,
			// the certificate and Rekor entry in annotations).
			legacy := testenv.Seed(t, up.host, nil, testenv.WithPrefix("legacy/"), testenv.WithSeed(3))
			ss.SignTag(t, up.host, legacy.OCIIndex, release, issuer, testenv.SimpleSigningPayload(up.host, legacy.OCIIndex.Repo, legacy.OCIIndex.Digest))
			ss.SignTag(t, up.host, legacy.Single, "https://github.com/someone/app/.github/workflows/release.yml@refs/heads/main", issuer,
				testenv.SimpleSigningPayload(up.host, legacy.Single.Repo, legacy.Single.Digest))
			key, pub := cosign.KeyPair()
			cosign.SignBundle(key, team.ManifestList.ByDigest(up.host))

			file := filepath.Join(t.TempDir(), "policy.yaml")
			policy := "rules:\n  - match: docker.io/**\n    verify:\n      any_of:\n" +
				"        - cosign: {identity: 'https://github\\.com/myorg/.+/\\.github/workflows/release\\.yml@.+', issuer: " + issuer + ", trusted_root: " + ss.TrustedRoot + "}\n" +
				"        - cosign: {key: " + pub + "}\n"
			if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
				t.Fatal(err)
			}
			m := startMirrorLogged(t, map[string]string{"REGCACHE_POLICY_FILE": file, "REGCACHE_UPSTREAM_URL": up.url, "REGCACHE_UPSTREAM_NAME": "docker.io",
				"REGCACHE_FRESHNESS": "1ms"}) // every tag pull asks the upstream: a moved tag is seen at once
			ref := func(img testenv.Image) string { return m.Host + "/" + img.Repo + ":" + img.Tag }
			if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); out != "" {
				t.Errorf("index signed by the rule's identity: %s", out)
			}
			if out := skopeoCopy(t, skopeo, ref(team.ManifestList)); out != "" {
				t.Errorf("signed by cosign --new-bundle-format with the rule's key: %s", out)
			}
			if out := skopeoCopy(t, skopeo, ref(legacy.OCIIndex)); out != "" {
				t.Errorf("index signed by the rule's identity in the tag scheme: %s", out)
			}
			for _, tt := range []struct {
				name string
				img  testenv.Image
				want string
			}{
				{"another identity", imgs.Single, "is signed by https://github.com/myorg/app/.github/workflows/test.yml@refs/heads/main"},
				{"another issuer", imgs.ManifestList, "(issuer https://accounts.google.com), not identity"},
				{"a bundle of another digest", team.Single, "a Sigstore bundle signs another digest"},
				{"unsigned", team.OCIIndex, "no signature found"},
				{"another identity, tag scheme", legacy.Single, "is signed by https://github.com/someone/app/.github/workflows/release.yml@refs/heads/main"},
			} {
				if out := skopeoCopy(t, skopeo, ref(tt.img)); !strings.Contains(out, "denied") || !strings.Contains(out, rule) || !strings.Contains(out, tt.want) {
					t.Errorf("%s: %q, want denied naming %s: %s", tt.name, out, rule, tt.want)
				}
			}

			if code, body := pull(t, m.Host, imgs.Single.Repo, imgs.Single.Tag); code != 403 || !strings.Contains(body, `"code":"DENIED"`) || !strings.Contains(body, rule) {
				t.Errorf("another identity, on the wire: %d %s; want 403 DENIED naming %s", code, body, rule)
			}

			// The signed index's tag moved to an unsigned image.
			moved, err := random.Image(1024, 1)
			if err != nil {
				t.Fatal(err)
			}
			movedRef, err := name.NewTag(up.host+"/"+imgs.OCIIndex.Repo+":"+imgs.OCIIndex.Tag, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.Write(movedRef, moved); err != nil {
				t.Fatal(err)
			}
			if out := skopeoCopy(t, skopeo, ref(imgs.OCIIndex)); !strings.Contains(out, rule) || !strings.Contains(out, "no signature found") {
				t.Errorf("tag moved to an unsigned digest: %q, want denied naming %s", out, rule)
			}

			// Audit mode serves the image of another identity and says it
			// would deny it.
			auditFile := filepath.Join(t.TempDir(), "audit.yaml")
			if err := os.WriteFile(auditFile, []byte("mode: audit\n"+policy), 0o644); err != nil {
				t.Fatal(err)
			}
			a := startMirrorLogged(t, map[string]string{"REGCACHE_POLICY_FILE": auditFile, "REGCACHE_UPSTREAM_URL": up.url, "REGCACHE_UPSTREAM_NAME": "docker.io"})
			if out := skopeoCopy(t, skopeo, a.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag); out != "" {
				t.Errorf("audit mode, another identity: %s", out)
			}
			if logs := a.logs.String(); !strings.Contains(logs, `"digest":"`+imgs.Single.Digest.String()+`","decision":"would_deny","rule":"`+rule+`"`) {
				t.Errorf("no would_deny audit line for the image of another identity:\n%s", logs)
			}
		})
	}
}
