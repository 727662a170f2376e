package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// keyPair writes a P-256 public key as cosign writes cosign.pub and
// returns the private key.
func keyPair(t *testing.T) (*ecdsa.PrivateKey, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return k, path
}

// sign makes a simple-signing signature of d, as cosign sign does.
func sign(t *testing.T, k *ecdsa.PrivateKey, d digest.Digest) Signature {
	t.Helper()
	payload := fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":"example/app"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, d)
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return Signature{Payload: payload, Base64: base64.StdEncoding.EncodeToString(sig)}
}

func sigsOf(list ...Signature) Signatures {
	return func(context.Context) ([]Signature, error) { return list, nil }
}

func TestCompileErrors(t *testing.T) {
	t.Parallel()
	_, pub := keyPair(t)
	tests := []struct {
		name string
		p    Policy
		want string
	}{
		{"mode", Policy{Mode: "block"}, `policy.mode: want enforce or audit, got "block"`},
		{"default", Policy{Default: "maybe"}, "policy.default: want allow, deny or verify"},
		{"default verify without keys", Policy{Default: "verify"}, "policy.default: verify needs policy.verify.any_of"},
		{"nothing decided", Policy{Rules: []Rule{{Match: "docker.io/x", Line: 7}}}, `policy.rules[0] (line 7).match: "docker.io/x" decides nothing`},
		{"deny and allow", Policy{Rules: []Rule{{Match: "docker.io/x", Deny: true, Allow: true}}}, "policy.rules[0].deny: a denying rule sets nothing else"},
		{"allow and verify", Policy{Rules: []Rule{{Match: "docker.io/x", Allow: true, Verify: []Verifier{{Cosign: &Cosign{Key: pub}}}}}}, "policy.rules[0].allow: set allow or verify, not both"},
		{"bad pattern", Policy{Rules: []Rule{{Match: "nothing", Deny: true}}}, `policy.rules[0].match: "nothing": no repository`},
		{"on_unavailable alone", Policy{Rules: []Rule{{Match: "a/b", Allow: true, OnUnavailable: "allow"}}}, "policy.rules[0].on_unavailable: goes with verify"},
		{"on_unavailable value", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Key: pub}}}, OnUnavailable: "maybe"}}}, `on_unavailable: want deny or allow, got "maybe"`},
		{"missing key file", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Key: "/nonexistent/k.pub"}}}}}}, "policy.rules[0].verify.any_of[0].cosign.key: open /nonexistent/k.pub"},
		{"not a key", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Key: "/etc/hostname"}}}}}}, "is not a PEM public key"},
		{"keyless without a trusted root", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Identity: "x", Issuer: "y"}}}}}}, "policy.rules[0].verify.any_of[0].cosign.trusted_root: missing"},
		{"keyless without an issuer", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Identity: "x", TrustedRoot: "/x"}}}}}}, "cosign.issuer: missing"},
		{"keyless, bad identity", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Identity: "(", Issuer: "y", TrustedRoot: "/x"}}}}}}, `cosign.identity: "(" is not a regular expression`},
		{"keyless, no trusted root file", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Identity: "x", Issuer: "y", TrustedRoot: "/nonexistent/trusted_root.json"}}}}}}, "policy.rules[0].verify.any_of[0].cosign.trusted_root: /nonexistent/trusted_root.json: failed to read trusted root open /nonexistent/trusted_root.json: no such file"},
		{"keyless, not a trusted root", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Identity: "x", Issuer: "y", TrustedRoot: "/etc/hostname"}}}}}}, "cosign.trusted_root: /etc/hostname:"},
		{"key and keyless", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{Key: pub, Identity: "x"}}}}}}, "set key (keyed), or identity, issuer and trusted_root (keyless), not both"},
		{"empty cosign", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Cosign: &Cosign{}}}}}}, "cosign: want key (keyed), or identity, issuer and trusted_root (keyless)"},
		{"notation without identities", Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Notation: &Notation{TrustStore: "/x"}}}}}}, "notation.identities: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Compile(tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile: %v, want an error with %q", err, tt.want)
			}
		})
	}
	if s, err := Compile(Policy{}); s != nil || err != nil {
		t.Errorf("no policy compiles to %v, %v; want nil, nil", s, err)
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	good, goodPub := keyPair(t)
	other, _ := keyPair(t)
	d := digest.FromString("image")
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	unavailable := func(context.Context) ([]Signature, error) { return nil, errors.New("upstream down") }
	verify := []Verifier{{Cosign: &Cosign{Key: goodPub}}}
	s, err := Compile(Policy{Default: "deny", Rules: []Rule{
		{Match: "ghcr.io/myorg/*", Verify: verify},
		{Match: "ghcr.io/lax/*", Verify: verify, OnUnavailable: "allow"},
		{Match: "docker.io/library/*", Allow: true},
		{Match: "*/*/evil-*", Deny: true},
		{Match: "docker.io/**", Cooldown: 72 * time.Hour},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		subj      Subject
		sigs      Signatures
		verdict   string
		rule      string
		reasonHas string
	}{
		{"allow", Subject{Upstream: "docker.io", Repo: "library/alpine"}, nil, "allow", "policy.rules[2] docker.io/library/*", "allowed"},
		{"deny", Subject{Upstream: "quay.io", Repo: "org/evil-app"}, nil, "deny", "policy.rules[3] */*/evil-*", "denied"},
		{"default deny", Subject{Upstream: "quay.io", Repo: "org/app"}, nil, "deny", "policy.default", "denied"},
		{"cooldown: first seen now", Subject{Upstream: "docker.io", Repo: "someone/app", FirstSeen: now.Add(-time.Hour)}, nil, "deny", "policy.rules[4] docker.io/**", "cooldown of 72h0m0s"},
		{"cooldown: unseen is now", Subject{Upstream: "docker.io", Repo: "someone/app"}, nil, "deny", "policy.rules[4] docker.io/**", "first seen 0s ago"},
		{"cooldown passed", Subject{Upstream: "docker.io", Repo: "someone/app", FirstSeen: now.Add(-73 * time.Hour)}, nil, "allow", "policy.rules[4] docker.io/**", "allowed"},
		{"signed", Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, sigsOf(sign(t, good, d)), "allow", "policy.rules[0] ghcr.io/myorg/*", "verified: cosign key"},
		{"one of several signs", Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, sigsOf(sign(t, other, d), sign(t, good, d)), "allow", "policy.rules[0] ghcr.io/myorg/*", "verified"},
		{"unsigned", Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, sigsOf(), "deny", "policy.rules[0] ghcr.io/myorg/*", "no signature found"},
		{"wrong key", Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, sigsOf(sign(t, other, d)), "deny", "policy.rules[0] ghcr.io/myorg/*", "does not verify"},
		{"signs another digest", Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, sigsOf(sign(t, good, digest.FromString("other"))), "deny", "policy.rules[0] ghcr.io/myorg/*", "not this digest"},
		{"unavailable: deny", Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, unavailable, "deny", "policy.rules[0] ghcr.io/myorg/*", "signatures unavailable: upstream down"},
		{"unavailable: allow", Subject{Upstream: "ghcr.io", Repo: "lax/app", Digest: d}, unavailable, "allow", "policy.rules[1] ghcr.io/lax/*", "on_unavailable: allow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := s.Decide(t.Context(), tt.subj, now, tt.sigs)
			if got.Verdict != tt.verdict || got.Rule != tt.rule || !strings.Contains(got.Reason, tt.reasonHas) || got.Allow != (tt.verdict == "allow") {
				t.Errorf("Decide = %+v; want %s by %q, reason with %q", got, tt.verdict, tt.rule, tt.reasonHas)
			}
		})
	}
}

func TestAuditServesAndReports(t *testing.T) {
	t.Parallel()
	s, err := Compile(Policy{Mode: "audit", Rules: []Rule{{Match: "*/**", Deny: true}}})
	if err != nil {
		t.Fatal(err)
	}
	d := s.Decide(t.Context(), Subject{Upstream: "docker.io", Repo: "library/alpine"}, time.Now(), nil)
	if !d.Allow || d.Verdict != "deny" || !d.Audited() {
		t.Errorf("audit mode: %+v; want served, verdict deny, audited", d)
	}
}

func TestGatesAndLabels(t *testing.T) {
	t.Parallel()
	s, err := Compile(Policy{Rules: []Rule{
		{Match: "docker.io/library/*", Allow: true},
		{Match: "docker.io/**", Cooldown: time.Hour},
		{Match: "ghcr.io/**", Deny: true},
		{Match: "quay.io/org/app:/^nightly-/", Deny: true},
		{Match: "quay.io/org/*:v1", Allow: true},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		up, repo string
		want     bool
	}{{"docker.io", "library/alpine", false}, {"docker.io", "me/app", true}, {"ghcr.io", "x/y", true}, {"quay.io", "x/y", false},
		{"quay.io", "org/app", true}, // a tag of it is denied: its blobs follow its allowed manifests
		{"quay.io", "org/other", false}} {
		if got := s.Gates(tt.up, tt.repo); got != tt.want {
			t.Errorf("Gates(%s/%s) = %v, want %v", tt.up, tt.repo, got, tt.want)
		}
	}
	if got := strings.Join(s.Labels(), ","); got != "rules[0],rules[1],rules[2],rules[3],rules[4],default" {
		t.Errorf("Labels = %s", got)
	}
	var none *Set
	if none.Gates("docker.io", "x") || none.Mode() != "" {
		t.Error("a nil set gates or has a mode")
	}
}

func TestArtifactTags(t *testing.T) {
	t.Parallel()
	d := digest.FromString("x")
	if SignatureTag(d) != "sha256-"+d.Encoded()+".sig" || !IsArtifactTag(SignatureTag(d)) {
		t.Errorf("SignatureTag = %s", SignatureTag(d))
	}
	for _, tag := range []string{"latest", "sha256-abc.sig", "sha256-" + d.Encoded() + ".sig.x"} {
		if IsArtifactTag(tag) {
			t.Errorf("IsArtifactTag(%q) = true", tag)
		}
	}
}
