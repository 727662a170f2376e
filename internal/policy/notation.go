package policy

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/notaryproject/notation-core-go/signature"
	_ "github.com/notaryproject/notation-core-go/signature/cose" // the COSE envelope
	_ "github.com/notaryproject/notation-core-go/signature/jws"  // the JWS envelope
	"github.com/opencontainers/go-digest"
)

// Notary Project signatures: OCI artifacts of this type referring to the
// signed manifest, their one layer the signature envelope (JWS or COSE),
// whose payload names the target artifact's digest.
const (
	NotationArtifact    = "application/vnd.cncf.notary.signature"
	notationPayloadType = "application/vnd.cncf.notary.payload.v1+json"
)

// IsNotationEnvelope reports whether a layer's media type is a signature
// envelope the Notary Project verifier reads.
func IsNotationEnvelope(mediaType string) bool {
	return slices.Contains(signature.RegisteredEnvelopeTypes(), mediaType)
}

// notation verifies Notary Project signatures (notary.x509 and
// notary.x509.signingAuthority schemes, no timestamping): the envelope's
// signature with its signing certificate, the certificate chain to a root
// of the trust store file, the leaf's subject against the trusted
// identities, the signature's expiry, and that the payload targets the
// digest decided.
type notation struct {
	storePath  string
	roots      *x509.CertPool
	identities []map[string]string // each a set of subject attributes, all to match
	anyone     bool                // "*"
}

func compileNotation(n *Notation, where string) (*notation, error) {
	if n.TrustStore == "" {
		return nil, fmt.Errorf("%s.notation.trust_store: missing (a PEM file of the CA certificates to trust)", where)
	}
	if len(n.Identities) == 0 {
		return nil, fmt.Errorf(`%s.notation.identities: missing (e.g. ["x509.subject: CN=release, O=My Org"], or ["*"])`, where)
	}
	pemBytes, err := os.ReadFile(n.TrustStore)
	if err != nil {
		return nil, fmt.Errorf("%s.notation.trust_store: %w", where, err)
	}
	v := &notation{storePath: n.TrustStore, roots: x509.NewCertPool()}
	certs := 0
	for block, rest := pem.Decode(pemBytes); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s.notation.trust_store: %s: %w", where, n.TrustStore, err)
		}
		v.roots.AddCert(c)
		certs++
	}
	if certs == 0 {
		return nil, fmt.Errorf("%s.notation.trust_store: %s holds no PEM certificate", where, n.TrustStore)
	}
	for i, id := range n.Identities {
		if strings.TrimSpace(id) == "*" {
			v.anyone = true
			continue
		}
		dn, ok := strings.CutPrefix(strings.TrimSpace(id), "x509.subject:")
		attrs, err := parseDN(dn)
		if !ok || err != nil {
			return nil, fmt.Errorf(`%s.notation.identities[%d]: %q: want "x509.subject: CN=..., O=..." or "*"`, where, i, id)
		}
		v.identities = append(v.identities, attrs)
	}
	return v, nil
}

// parseDN reads "CN=release, O=My Org" into its attributes.
func parseDN(dn string) (map[string]string, error) {
	out := map[string]string{}
	for part := range strings.SplitSeq(dn, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" || val == "" {
			return nil, errors.New("not an attribute")
		}
		out[strings.ToUpper(strings.TrimSpace(k))] = strings.TrimSpace(val)
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

// subjectMatches reports whether the certificate's subject has every
// attribute of want.
func subjectMatches(c *x509.Certificate, want map[string]string) bool {
	s := c.Subject
	have := map[string][]string{"CN": {s.CommonName}, "O": s.Organization, "OU": s.OrganizationalUnit, "C": s.Country,
		"ST": s.Province, "L": s.Locality}
	for k, v := range want {
		if !slices.Contains(have[k], v) {
			return false
		}
	}
	return true
}

// verify checks one Notary Project signature of d.
func (n *notation) verify(sig Signature, d digest.Digest, now time.Time) (string, error) {
	if sig.Envelope == nil {
		return "", errors.New("not a Notary Project signature")
	}
	env, err := signature.ParseEnvelope(sig.EnvelopeType, sig.Envelope)
	if err != nil {
		return "", fmt.Errorf("a Notary Project envelope does not parse: %w", err)
	}
	content, err := env.Verify() // integrity: the signature with the envelope's signing certificate
	if err != nil {
		return "", fmt.Errorf("a Notary Project signature does not verify: %w", err)
	}
	chain := content.SignerInfo.CertificateChain
	if len(chain) == 0 {
		return "", errors.New("a Notary Project signature has no certificate chain")
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: n.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err != nil {
		return "", fmt.Errorf("a Notary Project signature's certificate does not chain to %s: %w", n.storePath, err)
	}
	signer := "notation " + leaf.Subject.String()
	if !n.anyone && !slices.ContainsFunc(n.identities, func(want map[string]string) bool { return subjectMatches(leaf, want) }) {
		return "", fmt.Errorf("a Notary Project signature is by %s, not a trusted identity", leaf.Subject)
	}
	if exp := content.SignerInfo.SignedAttributes.Expiry; !exp.IsZero() && now.After(exp) {
		return "", fmt.Errorf("a Notary Project signature expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if content.Payload.ContentType != notationPayloadType {
		return "", fmt.Errorf("a Notary Project payload is of type %q", content.Payload.ContentType)
	}
	var p struct {
		TargetArtifact struct {
			Digest string `json:"digest"`
		} `json:"targetArtifact"`
	}
	if err := json.Unmarshal(content.Payload.Content, &p); err != nil {
		return "", errors.New("a Notary Project payload is not JSON")
	}
	if p.TargetArtifact.Digest != d.String() {
		return "", fmt.Errorf("a Notary Project signature verifies (%s) but targets %s, not this digest", signer, p.TargetArtifact.Digest)
	}
	return signer, nil
}
