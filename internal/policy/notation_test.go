package policy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/cose"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/opencontainers/go-digest"
)

// testCA is a root CA and a code-signing leaf under it, as a release
// pipeline's Notary Project signing certificate is issued.
type testCA struct {
	root      *x509.Certificate
	rootKey   *ecdsa.PrivateKey
	storePath string // the root as a PEM trust store
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " root", Organization: []string{"Test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := x509.ParseCertificate(der)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return testCA{root, key, path}
}

// sign makes a Notary Project signature envelope (of envelopeType) of d
// by a leaf certificate named cn, issued by the CA.
func (ca testCA) sign(t *testing.T, envelopeType, cn string, d digest.Digest, expiry time.Time) Signature {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn, Organization: []string{"My Org"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	signer, err := signature.NewLocalSigner([]*x509.Certificate{leaf, ca.root}, key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signature.NewEnvelope(envelopeType)
	if err != nil {
		t.Fatal(err)
	}
	signedAt := time.Now()
	if !expiry.IsZero() {
		signedAt = expiry.Add(-time.Minute)
	}
	payload := fmt.Appendf(nil, `{"targetArtifact":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1234}}`, d)
	b, err := env.Sign(&signature.SignRequest{Payload: signature.Payload{ContentType: notationPayloadType, Content: payload},
		Signer: signer, SigningTime: signedAt, Expiry: expiry, SigningScheme: signature.SigningSchemeX509, SigningAgent: "regcache-test"})
	if err != nil {
		t.Fatal(err)
	}
	return Signature{Envelope: b, EnvelopeType: envelopeType}
}

// TestNotation: Notary Project signatures (JWS and COSE envelopes, made
// with notation-core-go, notation's own library) verified against a trust
// store file and trusted identities: the release identity verifies; another
// identity, another CA, another digest, an expired signature and a
// tampered envelope are denied; "*" trusts any identity the store vouches
// for; a cosign signature does not pass for a notation one.
func TestNotation(t *testing.T) {
	t.Parallel()
	ca, otherCA := newTestCA(t, "release"), newTestCA(t, "other")
	d := digest.FromString("image")
	now := time.Now()
	set := func(ids ...string) *Set {
		s, err := Compile(Policy{Rules: []Rule{{Match: "ghcr.io/myorg/*", Verify: []Verifier{{Notation: &Notation{TrustStore: ca.storePath, Identities: ids}}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := set("x509.subject: CN=release, O=My Org")
	decide := func(s *Set, sig Signature) Decision {
		return s.Decide(t.Context(), Subject{Upstream: "ghcr.io", Repo: "myorg/app", Digest: d}, now, sigsOf(sig))
	}
	for _, typ := range []string{jws.MediaTypeEnvelope, cose.MediaTypeEnvelope} {
		if got := decide(s, ca.sign(t, typ, "release", d, time.Time{})); got.Verdict != "allow" || got.Signer != "notation CN=release,O=My Org" {
			t.Errorf("%s by the trusted identity: %+v", typ, got)
		}
	}
	tampered := ca.sign(t, jws.MediaTypeEnvelope, "release", d, time.Time{})
	tampered.Envelope = []byte(strings.Replace(string(tampered.Envelope), `"signature":"`, `"signature":"AAAA`, 1))
	for name, tt := range map[string]struct {
		sig  Signature
		want string
	}{
		"another identity": {ca.sign(t, jws.MediaTypeEnvelope, "intern", d, time.Time{}), "is by CN=intern,O=My Org, not a trusted identity"},
		"another CA":       {otherCA.sign(t, jws.MediaTypeEnvelope, "release", d, time.Time{}), "does not chain to " + ca.storePath},
		"another digest":   {ca.sign(t, cose.MediaTypeEnvelope, "release", digest.FromString("other"), time.Time{}), "not this digest"},
		"expired":          {ca.sign(t, jws.MediaTypeEnvelope, "release", d, now.Add(-time.Minute)), "expired"},
		"tampered":         {tampered, "Notary Project"},
		"a cosign one":     {Signature{Payload: []byte("{}"), Base64: "AAAA"}, "not a Notary Project signature"},
	} {
		if got := decide(s, tt.sig); got.Verdict != "deny" || !strings.Contains(got.Reason, tt.want) {
			t.Errorf("%s: %+v, want deny with %q", name, got, tt.want)
		}
	}
	if got := decide(set("*"), ca.sign(t, jws.MediaTypeEnvelope, "intern", d, time.Time{})); got.Verdict != "allow" {
		t.Errorf(`identities ["*"]: %+v`, got)
	}
	for _, tt := range []struct {
		n    Notation
		want string
	}{
		{Notation{Identities: []string{"*"}}, "trust_store: missing"},
		{Notation{TrustStore: "/nonexistent.pem", Identities: []string{"*"}}, "trust_store: open /nonexistent.pem"},
		{Notation{TrustStore: "/etc/hostname", Identities: []string{"*"}}, "holds no PEM certificate"},
		{Notation{TrustStore: ca.storePath, Identities: []string{"CN=release"}}, `identities[0]: "CN=release": want "x509.subject: CN=..., O=..." or "*"`},
	} {
		_, err := Compile(Policy{Rules: []Rule{{Match: "a/b", Verify: []Verifier{{Notation: &tt.n}}}}})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%+v): %v, want %q", tt.n, err, tt.want)
		}
	}
}
