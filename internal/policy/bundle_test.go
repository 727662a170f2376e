package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

const (
	releaseID = "https://github.com/myorg/app/.github/workflows/release.yml@refs/tags/v1.0.0"
	ciIssuer  = "https://token.actions.githubusercontent.com"
)

// TestKeylessBundles: Sigstore bundles signed by a test Sigstore instance
// (sigstore-go's testing CA: Fulcio, Rekor, a timestamp authority) and
// verified against its trusted root read from a file. The rule's identity
// and issuer allow; another identity, another issuer, another digest, an
// attestation, another instance's certificate and a keyed signature do
// not.
func TestKeylessBundles(t *testing.T) {
	t.Parallel()
	ss := testenv.NewSigstore(t)
	stranger := testenv.NewSigstore(t)
	key := testenv.NewCosignKey(t)
	d := digest.FromString("image")
	sig := func(b []byte) Signatures { return sigsOf(Signature{Bundle: b}) }
	s, err := Compile(Policy{Rules: []Rule{{Match: "ghcr.io/myorg/*", Verify: []Verifier{{Cosign: &Cosign{
		Identity: `https://github\.com/myorg/.+/\.github/workflows/release\.yml@.+`, Issuer: ciIssuer, TrustedRoot: ss.TrustedRoot}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		sigs      Signatures
		verdict   string
		reasonHas string
	}{
		{"signed by the identity", sig(ss.Bundle(t, releaseID, ciIssuer, testenv.Statement(d, testenv.CosignSignPredicate))), "allow",
			"signature verified: cosign keyless " + releaseID + " (issuer " + ciIssuer + ")"},
		{"another identity", sig(ss.Bundle(t, "https://github.com/myorg/app/.github/workflows/test.yml@refs/heads/main", ciIssuer, testenv.Statement(d, testenv.CosignSignPredicate))), "deny",
			"is signed by https://github.com/myorg/app/.github/workflows/test.yml@refs/heads/main (issuer " + ciIssuer + "), not identity"},
		{"identity only inside the name (the pattern is anchored)", sig(ss.Bundle(t, "https://evil.example/?"+releaseID, ciIssuer, testenv.Statement(d, testenv.CosignSignPredicate))), "deny",
			"is signed by https://evil.example/?"},
		{"another issuer", sig(ss.Bundle(t, releaseID, "https://accounts.google.com", testenv.Statement(d, testenv.CosignSignPredicate))), "deny",
			"(issuer https://accounts.google.com), not identity"},
		{"another digest", sig(ss.Bundle(t, releaseID, ciIssuer, testenv.Statement(digest.FromString("other"), testenv.CosignSignPredicate))), "deny",
			"a Sigstore bundle signs another digest, not " + d.String()},
		{"an attestation, not a signature", sig(ss.Bundle(t, releaseID, ciIssuer, testenv.Statement(d, "https://slsa.dev/provenance/v1"))), "deny",
			"is an attestation (https://slsa.dev/provenance/v1)"},
		{"another instance's certificate", sig(stranger.Bundle(t, releaseID, ciIssuer, testenv.Statement(d, testenv.CosignSignPredicate))), "deny",
			"a Sigstore bundle does not verify"},
		{"a keyed bundle", sig(key.KeyBundle(t, testenv.Statement(d, testenv.CosignSignPredicate))), "deny", "a Sigstore bundle does not verify"},
		{"a keyed simple-signing signature", sigsOf(Signature{Payload: []byte("{}"), Base64: "AA=="}), "deny", "a signature has no certificate"},
		{"not a bundle", sig([]byte(`{"mediaType":"x"}`)), "deny", "a Sigstore bundle does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := s.Decide(t.Context(), Subject{Upstream: "ghcr.io", Repo: "myorg/app", Tag: "v1", Digest: d}, time.Now(), tt.sigs)
			if got.Verdict != tt.verdict || !strings.Contains(got.Reason, tt.reasonHas) {
				t.Errorf("Decide = %s: %s; want %s, reason with %q", got.Verdict, got.Reason, tt.verdict, tt.reasonHas)
			}
		})
	}
}

// TestKeyedBundles: a Sigstore bundle signed with a cosign key (as cosign
// sign --new-bundle-format --key writes it) verifies with the rule's key
// when it signs the digest decided, and not with another key or for
// another digest.
func TestKeyedBundles(t *testing.T) {
	t.Parallel()
	key, other := testenv.NewCosignKey(t), testenv.NewCosignKey(t)
	d := digest.FromString("image")
	s, err := Compile(Policy{Default: "verify", Verify: []Verifier{{Cosign: &Cosign{Key: key.Pub}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, verdict, reasonHas string
		bundle                   []byte
	}{
		{"signed with the key", "allow", "cosign key " + key.Pub + " (Sigstore bundle)", key.KeyBundle(t, testenv.Statement(d, testenv.CosignSignPredicate))},
		{"another key", "deny", "a Sigstore bundle does not verify", other.KeyBundle(t, testenv.Statement(d, testenv.CosignSignPredicate))},
		{"another digest", "deny", "signs another digest", key.KeyBundle(t, testenv.Statement(digest.FromString("x"), testenv.CosignSignPredicate))},
	} {
		got := s.Decide(t.Context(), Subject{Upstream: "docker.io", Repo: "library/app", Digest: d}, time.Now(), sigsOf(Signature{Bundle: tt.bundle}))
		if got.Verdict != tt.verdict || !strings.Contains(got.Reason, tt.reasonHas) {
			t.Errorf("%s: %s: %s; want %s, reason with %q", tt.name, got.Verdict, got.Reason, tt.verdict, tt.reasonHas)
		}
	}
}

// TestKeylessTagScheme: keyless signatures in cosign's tag scheme (the
// simple-signing payload, its signature, and the certificate, Rekor entry
// and timestamp in the layer's annotations), verified by sigstore-go
// against the trusted root file like bundles: the rule's identity signing
// this digest allows; another identity, a payload of another digest, a
// changed payload, no Rekor entry (the root lists a log, so one is
// required) and another instance's certificate do not.
func TestKeylessTagScheme(t *testing.T) {
	t.Parallel()
	ss, stranger := testenv.NewSigstore(t), testenv.NewSigstore(t)
	d := digest.FromString("image")
	payload := testenv.SimpleSigningPayload("ghcr.io", "myorg/app", d)
	legacy := func(ss *testenv.Sigstore, identity string, payload []byte, drop ...string) Signatures {
		b64, ann := ss.SignLegacy(t, identity, ciIssuer, payload)
		for _, k := range drop {
			delete(ann, k)
		}
		return sigsOf(Signature{Payload: payload, Base64: b64, Annotations: ann})
	}
	s, err := Compile(Policy{Default: "verify", Verify: []Verifier{{Cosign: &Cosign{
		Identity: `https://github\.com/myorg/.+/\.github/workflows/release\.yml@.+`, Issuer: ciIssuer, TrustedRoot: ss.TrustedRoot}}}})
	if err != nil {
		t.Fatal(err)
	}
	b64, ann := ss.SignLegacy(t, releaseID, ciIssuer, payload)
	changed := sigsOf(Signature{Payload: testenv.SimpleSigningPayload("ghcr.io", "myorg/other", d), Base64: b64, Annotations: ann})
	for _, tt := range []struct {
		name, verdict, reasonHas string
		sigs                     Signatures
	}{
		{"signed by the identity", "allow", "cosign keyless " + releaseID, legacy(ss, releaseID, payload)},
		{"another identity", "deny", "is signed by https://github.com/someone/app/.github/workflows/release.yml@refs/heads/main", legacy(ss, "https://github.com/someone/app/.github/workflows/release.yml@refs/heads/main", payload)},
		{"another digest", "deny", "signs " + digest.FromString("other").String() + ", not this digest", legacy(ss, releaseID, testenv.SimpleSigningPayload("ghcr.io", "myorg/app", digest.FromString("other")))},
		{"a changed payload", "deny", "a keyless signature does not verify", changed},
		{"no Rekor entry", "deny", "not enough verified log entries", legacy(ss, releaseID, payload, RekorBundleAnnotation)},
		{"another instance's certificate", "deny", "a keyless signature does not verify", legacy(stranger, releaseID, payload)},
		{"no certificate", "deny", "a signature has no certificate", legacy(ss, releaseID, payload, CertificateAnnotation)},
	} {
		got := s.Decide(t.Context(), Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, time.Now(), tt.sigs)
		if got.Verdict != tt.verdict || !strings.Contains(got.Reason, tt.reasonHas) {
			t.Errorf("%s: %s: %s; want %s, reason with %q", tt.name, got.Verdict, got.Reason, tt.verdict, tt.reasonHas)
		}
	}
}

// BenchmarkKeylessBundle: one keyless decision of a bundle (parse, the
// Rekor entry's promise and proof, the timestamp, the certificate chain,
// the DSSE signature, the identity): the CPU a cold verification adds.
func BenchmarkKeylessBundle(b *testing.B) {
	ss := testenv.NewSigstore(b)
	d := digest.FromString("image")
	s, err := Compile(Policy{Default: "verify", Verify: []Verifier{{Cosign: &Cosign{Identity: releaseID, Issuer: ciIssuer, TrustedRoot: ss.TrustedRoot}}}})
	if err != nil {
		b.Fatal(err)
	}
	sigs := sigsOf(Signature{Bundle: ss.Bundle(b, releaseID, ciIssuer, testenv.Statement(d, testenv.CosignSignPredicate))})
	for b.Loop() {
		if got := s.Decide(b.Context(), Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, time.Now(), sigs); got.Verdict != ActionAllow {
			b.Fatal(got.Reason)
		}
	}
}
