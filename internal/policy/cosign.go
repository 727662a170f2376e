package policy

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// Cosign's tag scheme and simple-signing payloads, as cosign writes them:
// the signatures of sha256:<hex> are the layers of the manifest tagged
// sha256-<hex>.sig in the same repository, each layer the payload and its
// annotation the signature.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
	// A keyless signature of the tag scheme carries its certificate, the
	// Rekor entry's inclusion promise (cosign's "bundle", not a Sigstore
	// bundle) and an RFC 3161 timestamp in these annotations of its layer.
	CertificateAnnotation = "dev.sigstore.cosign/certificate"
	RekorBundleAnnotation = "dev.sigstore.cosign/bundle"
	TimestampAnnotation   = "dev.sigstore.cosign/rfc3161timestamp"
	simpleSigningType     = "cosign container image signature"
	// CosignSignatureArtifact is the artifact type of a signature cosign
	// stores as an OCI 1.1 referrer (--registry-referrers-mode=oci-1-1).
	CosignSignatureArtifact = "application/vnd.dev.cosign.artifact.sig.v1+json"
)

// SignatureTag is the tag cosign stores d's signatures under.
func SignatureTag(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() + ".sig" }

// artifactTag is a tag of cosign's scheme: signatures, attestations,
// SBOMs of a digest.
var artifactTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}\.(sig|att|sbom)$`)

// IsArtifactTag reports whether tag names a digest's signatures,
// attestations or SBOM (cosign's tag scheme): metadata about an image,
// not an image, so the policy does not decide them.
func IsArtifactTag(tag string) bool { return artifactTag.MatchString(tag) }

// referrersTag is the OCI referrers tag schema's tag: an index of a
// digest's referrers, kept by clients on registries without the referrers
// API (Distribution 2.8).
var referrersTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}$`)

// ReferrersTag is the referrers tag schema's tag of d.
func ReferrersTag(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() }

// IsReferrersTag reports whether tag is one of the referrers tag schema.
func IsReferrersTag(tag string) bool { return referrersTag.MatchString(tag) }

// simpleSigning is the part of a simple-signing payload checked.
type simpleSigning struct {
	Critical struct {
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
}

// verify checks one signature with the key, then that its payload names d.
func (k key) verify(sig Signature, d digest.Digest, _ time.Time) (string, error) {
	if sig.Envelope != nil {
		return "", errors.New("a Notary Project signature, not cosign's")
	}
	if sig.Bundle != nil {
		b, err := parseBundle(sig.Bundle)
		if err != nil {
			return "", err
		}
		if _, err := verifyBundle(k.bundles.verifier, b, d, verify.WithKey()); err != nil {
			return "", fmt.Errorf("%w (key %s)", err, k.path)
		}
		return "cosign key " + k.path + " (Sigstore bundle)", nil
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil {
		return "", errors.New("a signature is not base64")
	}
	if err := k.verifier.VerifySignature(bytes.NewReader(raw), bytes.NewReader(sig.Payload)); err != nil {
		return "", fmt.Errorf("a signature does not verify with %s", k.path)
	}
	signed, err := signedDigest(sig.Payload)
	if err != nil {
		return "", err
	}
	if signed != d.String() {
		return "", fmt.Errorf("a signature verifies with %s but signs %s, not this digest", k.path, signed)
	}
	return "cosign key " + k.path, nil
}

// signedDigest reads the digest a simple-signing payload signs.
func signedDigest(payload []byte) (string, error) {
	var p simpleSigning
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", errors.New("a signed payload is not simple-signing JSON")
	}
	if p.Critical.Type != simpleSigningType {
		return "", fmt.Errorf("a signed payload is of type %q, not a container image signature", p.Critical.Type)
	}
	return p.Critical.Image.DockerManifestDigest, nil
}
