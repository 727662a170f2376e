package mirror

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/testenv"
)

func compilePolicy(t *testing.T, p policy.Policy) *policy.Set {
	t.Helper()
	s, err := policy.Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// denied checks err is 403 DENIED naming want.
func denied(t *testing.T, what string, err error, want string) {
	t.Helper()
	var we *oci.Error
	if !errors.As(err, &we) || we.Code != oci.ErrDenied || we.HTTPStatus() != 403 || !strings.Contains(we.Message, want) {
		t.Errorf("%s: %v, want 403 DENIED with %q", what, err, want)
	}
}

func readBlob(t *testing.T, s *Service, req Request, d digest.Digest) error {
	t.Helper()
	b, _, err := s.Blob(t.Context(), req, d)
	if err != nil {
		return err
	}
	defer b.Close()
	var buf bytes.Buffer
	return b.Send(t.Context(), &buf, 0, -1)
}

// TestPolicyAllowDenyAndBlobs: a denied image's manifest is refused with
// 403 DENIED naming the rule, none of its layers is prefetched, and its
// blobs are not served under its repository by digest; an allowed image
// and its blobs are served.
func TestPolicyAllowDenyAndBlobs(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	set := compilePolicy(t, policy.Policy{Default: "deny", Rules: []policy.Rule{
		{Match: "docker.io/" + imgs.Single.Repo, Allow: true},
		{Match: "docker.io/" + imgs.ManifestList.Repo, Deny: true},
	}})
	s := newService(t, hub, c, WithPolicy(set), WithPrefetch(true, 4))
	single := Request{Upstream: "docker.io", Repo: imgs.Single.Repo, Client: netip.MustParseAddr("192.0.2.1")}
	if _, _, err := s.Manifest(t.Context(), single, tagRef(t, "latest")); err != nil {
		t.Fatalf("allowed image: %v", err)
	}
	for _, b := range imgs.Single.Blobs() {
		if err := readBlob(t, s, single, b.Digest); err != nil {
			t.Errorf("allowed image's blob %s: %v", b.Digest, err)
		}
	}
	multi := Request{Upstream: "docker.io", Repo: imgs.ManifestList.Repo, Client: netip.MustParseAddr("192.0.2.2"), User: "ci"}
	_, _, err := s.Manifest(t.Context(), multi, tagRef(t, "latest"))
	denied(t, "denied index", err, "policy.rules[1] docker.io/"+imgs.ManifestList.Repo)
	child := imgs.ManifestList.Platforms[0]
	_, _, err = s.Manifest(t.Context(), multi, oci.Reference{Digest: child.Digest})
	denied(t, "denied platform manifest by digest", err, "denied by the policy")
	for _, b := range child.Blobs() {
		denied(t, "denied image's blob", readBlob(t, s, multi, b.Digest), "not referenced by a manifest the mirror's pull policy allowed")
	}
	// An image pushed under a tag of cosign's signature scheme is an image
	// still: decided, not waved through as a signature.
	disguised := "sha256-" + strings.Repeat("ab", 32) + ".sig"
	hub.Seed(t, testenv.WithTag(disguised), testenv.WithSeed(3))
	_, _, err = s.Manifest(t.Context(), multi, tagRef(t, disguised))
	denied(t, "an image tagged as a signature", err, "policy.rules[1] docker.io/"+imgs.ManifestList.Repo)
	// An index under a tag of the referrers tag schema is waved through
	// only when it lists artifacts: one listing platforms is decided.
	schema := "sha256-" + strings.Repeat("cd", 32)
	hub.Seed(t, testenv.WithTag(schema), testenv.WithSeed(4))
	_, _, err = s.Manifest(t.Context(), multi, tagRef(t, schema))
	denied(t, "an image index tagged as a referrers list", err, "policy.rules[1] docker.io/"+imgs.ManifestList.Repo)
	// The default denies, and gates blobs of every other repository.
	_, _, err = s.Manifest(t.Context(), Request{Upstream: "docker.io", Repo: imgs.OCIIndex.Repo}, tagRef(t, "latest"))
	denied(t, "default", err, "policy.default")
	s.Close() // waits for prefetches
	for _, b := range child.Blobs() {
		if n := hub.BlobBytes(b.Digest.String()); n != 0 {
			t.Errorf("a denied image's blob %s was fetched (%d bytes): prefetched or served", b.Digest, n)
		}
	}
	ds := s.RecentDenials()
	if len(ds) != 5 || ds[len(ds)-2].Repository != imgs.ManifestList.Repo || ds[len(ds)-1].User != "ci" || ds[len(ds)-1].Client != "192.0.2.2" || ds[0].Rule != "policy.default" {
		t.Errorf("recent denials: %+v", ds)
	}
}

// TestPolicyAudit: in audit mode what the policy denies is served, blobs
// included, and reported as would_deny.
func TestPolicyAudit(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, hub, c, WithPolicy(compilePolicy(t, policy.Policy{Mode: "audit", Default: "deny"})))
	req := Request{Upstream: "docker.io", Repo: imgs.Single.Repo}
	if _, _, err := s.Manifest(t.Context(), req, tagRef(t, "latest")); err != nil {
		t.Fatalf("audit mode refused: %v", err)
	}
	if err := readBlob(t, s, req, imgs.Single.Layers[0].Digest); err != nil {
		t.Errorf("audit mode refused a blob: %v", err)
	}
	if ds := s.RecentDenials(); len(ds) != 1 || ds[0].Decision != "would_deny" {
		t.Errorf("recent denials: %+v", ds)
	}
}

// TestPolicyCooldown: a digest first seen less than the cooldown ago is
// refused; once the window has passed, served (the clock is injected).
func TestPolicyCooldown(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, hub, c, WithPolicy(compilePolicy(t, policy.Policy{Rules: []policy.Rule{{Match: "docker.io/**", Cooldown: 72 * time.Hour}}})))
	req := Request{Upstream: "docker.io", Repo: imgs.Single.Repo}
	_, _, err := s.Manifest(t.Context(), req, tagRef(t, "latest"))
	denied(t, "pushed now", err, "in a cooldown of 72h0m0s")
	c.Add(71 * time.Hour)
	_, _, err = s.Manifest(t.Context(), req, tagRef(t, "latest"))
	denied(t, "71h later", err, "first seen 71h0m0s ago")
	_, _, err = s.Manifest(t.Context(), req, oci.Reference{Digest: imgs.Single.Digest})
	denied(t, "71h later, by digest", err, "cooldown")
	c.Add(2 * time.Hour)
	if _, _, err := s.Manifest(t.Context(), req, tagRef(t, "latest")); err != nil {
		t.Errorf("73h later: %v", err)
	}
	if err := readBlob(t, s, req, imgs.Single.Layers[0].Digest); err != nil {
		t.Errorf("73h later, a layer: %v", err)
	}
}

// TestPolicyVerify: keyed cosign signatures in the tag scheme. A digest
// signed with the rule's key is served; one signed with another key, or
// unsigned, is denied naming the rule. An index's signature covers its
// platform manifests and their blobs. With the upstream down, a digest
// verified before verifies again from the cached signature; an unsigned
// one is denied (on_unavailable: deny) or served (allow).
func TestPolicyVerify(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	good, other := testenv.NewCosignKey(t), testenv.NewCosignKey(t)
	good.Sign(t, hub.AdminHost, imgs.Single.Repo, imgs.Single.Digest)
	good.Sign(t, hub.AdminHost, imgs.OCIIndex.Repo, imgs.OCIIndex.Digest)
	other.Sign(t, hub.AdminHost, imgs.ManifestList.Repo, imgs.ManifestList.Digest)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	p := func(onUnavailable string) *policy.Set {
		return compilePolicy(t, policy.Policy{Rules: []policy.Rule{
			{Match: "docker.io/**", Verify: []policy.Verifier{{Cosign: &policy.Cosign{Key: good.Pub}}}, OnUnavailable: onUnavailable},
		}})
	}
	s := newService(t, hub, c, WithPolicy(p("")))
	single := Request{Upstream: "docker.io", Repo: imgs.Single.Repo}
	if _, _, err := s.Manifest(t.Context(), single, tagRef(t, "latest")); err != nil {
		t.Errorf("signed with the rule's key: %v", err)
	}
	list := Request{Upstream: "docker.io", Repo: imgs.ManifestList.Repo}
	_, _, err := s.Manifest(t.Context(), list, tagRef(t, "latest"))
	denied(t, "signed with another key", err, "(policy.rules[0] docker.io/**): no signature verified with the rule's keys")
	index := Request{Upstream: "docker.io", Repo: imgs.OCIIndex.Repo}
	if _, _, err := s.Manifest(t.Context(), index, tagRef(t, "latest")); err != nil {
		t.Errorf("signed index: %v", err)
	}
	plat := imgs.OCIIndex.Platforms[1]
	if _, _, err := s.Manifest(t.Context(), index, oci.Reference{Digest: plat.Digest}); err != nil {
		t.Errorf("a platform manifest of a signed index: %v", err)
	}
	if err := readBlob(t, s, index, plat.Layers[0].Digest); err != nil {
		t.Errorf("a layer of a platform manifest of a signed index: %v", err)
	}

	// Cached while no policy was in effect: its signatures never fetched.
	listChild := Request{Upstream: "docker.io", Repo: imgs.ManifestList.Repo}
	s.SetPolicy(nil)
	if _, _, err := s.Manifest(t.Context(), listChild, oci.Reference{Digest: imgs.ManifestList.Platforms[1].Digest}); err != nil {
		t.Fatal(err)
	}

	// The upstream down: decisions are made again (a new policy), from
	// what is cached.
	hub.Down()
	c.Add(time.Hour) // every tag is past its freshness: revalidation fails, the cache answers
	s.SetPolicy(p(""))
	if _, _, err := s.Manifest(t.Context(), single, tagRef(t, "latest")); err != nil {
		t.Errorf("verified before, upstream down: %v", err)
	}
	_, _, err = s.Manifest(t.Context(), list, tagRef(t, "latest"))
	denied(t, "another key's signature, upstream down", err, "no signature verified")
	// A digest never verified, whose signatures were never fetched:
	// unavailable.
	s.SetPolicy(p("deny"))
	_, _, err = s.Manifest(t.Context(), listChild, oci.Reference{Digest: imgs.ManifestList.Platforms[1].Digest})
	denied(t, "unverified, upstream down, on_unavailable deny", err, "signatures unavailable")
	s.SetPolicy(p("allow"))
	if _, _, err := s.Manifest(t.Context(), listChild, oci.Reference{Digest: imgs.ManifestList.Platforms[1].Digest}); err != nil {
		t.Errorf("unverified, upstream down, on_unavailable allow: %v", err)
	}
}

// BenchmarkManifestHitPolicy is the content service's warm manifest hit
// by tag of a verified image, without and with a verify policy (the
// decision kept from the first pull): what the policy adds per hit.
func BenchmarkManifestHitPolicy(b *testing.B) {
	hub := testenv.NewHub(b)
	imgs := hub.Seed(b)
	key := testenv.NewCosignKey(b)
	key.Sign(b, hub.AdminHost, imgs.Single.Repo, imgs.Single.Digest)
	set, err := policy.Compile(policy.Policy{Default: "verify", Verify: []policy.Verifier{{Cosign: &policy.Cosign{Key: key.Pub}}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		set  *policy.Set
	}{{"off", nil}, {"on", set}} {
		b.Run(tt.name, func(b *testing.B) {
			c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			s := newService(b, hub, c, WithPolicy(tt.set))
			req := Request{Upstream: "docker.io", Repo: imgs.Single.Repo}
			ref := oci.Reference{Tag: "latest"}
			if _, _, err := s.Manifest(b.Context(), req, ref); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, _, err := s.Manifest(context.Background(), req, ref); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// TestReferrersListingKept: the referrers listing through which the
// policy found a Sigstore bundle is kept in the cache: after a restart
// over the same cache with the upstream down, the digest verifies again
// from it (before, the listing lived in memory only, and the referrers tag
// schema's cached index was not read when the listing failed: the digest
// was "unavailable"); while fresh, a restarted mirror reads the API's
// listing without asking the upstream.
func TestReferrersListingKept(t *testing.T) {
	t.Parallel()
	t.Run("referrers API", func(t *testing.T) { t.Parallel(); testReferrersKept(t, true) })
	t.Run("referrers tag schema", func(t *testing.T) { t.Parallel(); testReferrersKept(t, false) })
}

func testReferrersKept(t *testing.T, api bool) {
	var opts []testenv.HubOption
	if api {
		opts = append(opts, testenv.WithReferrersAPI())
	}
	hub := testenv.NewHub(t, opts...)
	imgs := hub.Seed(t)
	ss := testenv.NewSigstore(t)
	const id, issuer = "https://github.com/myorg/app/.github/workflows/release.yml@refs/heads/main", "https://token.actions.githubusercontent.com"
	testenv.PushBundle(t, hub.AdminHost, imgs.Single, ss.Bundle(t, id, issuer, testenv.Statement(imgs.Single.Digest, testenv.CosignSignPredicate)))
	set := compilePolicy(t, policy.Policy{Rules: []policy.Rule{{Match: "docker.io/**",
		Verify: []policy.Verifier{{Cosign: &policy.Cosign{Identity: "https://github.com/myorg/.+", Issuer: issuer, TrustedRoot: ss.TrustedRoot}}}}}})
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	dir := t.TempDir()
	single := Request{Upstream: "docker.io", Repo: imgs.Single.Repo}
	byDigest := oci.Reference{Digest: imgs.Single.Digest}

	s, stop := newServiceAt(t, dir, hub, c, WithPolicy(set))
	if _, _, err := s.Manifest(t.Context(), single, byDigest); err != nil {
		t.Fatalf("signed by the identity: %v", err)
	}
	stop()

	// Restarted, within the freshness window: no referrers request.
	before := len(hub.Requests())
	s, stop = newServiceAt(t, dir, hub, c, WithPolicy(set))
	if _, _, err := s.Manifest(t.Context(), single, byDigest); err != nil {
		t.Fatalf("restarted, fresh: %v", err)
	}
	for _, r := range hub.Requests()[before:] {
		// (Without the API, its 404 is asked again; the tag schema's
		// index is read from the cache.)
		if strings.Contains(r.Path, "/referrers/") && api {
			t.Errorf("restarted within the freshness window, the referrers were asked again: %s", r.Path)
		}
	}
	stop()

	// Restarted with the upstream down, past the freshness window.
	hub.Down()
	c.Add(time.Hour)
	s, _ = newServiceAt(t, dir, hub, c, WithPolicy(set))
	if _, _, err := s.Manifest(t.Context(), single, byDigest); err != nil {
		t.Errorf("restarted, upstream down: %v", err)
	}
}
