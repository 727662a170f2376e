package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// Sigstore bundles as OCI referrers, as `cosign sign --new-bundle-format`
// (and cosign 3 by default) writes them: a manifest of this artifact type
// referring to the signed manifest, its one layer the bundle's JSON, whose
// DSSE envelope holds an in-toto statement with the signed digest as its
// subject and cosign's signing predicate type.
const (
	SigstoreBundleArtifact = "application/vnd.dev.sigstore.bundle.v0.3+json"
	cosignSignPredicate    = "https://sigstore.dev/cosign/sign/v1"
)

// IsSigstoreBundle reports whether a layer's media type is a Sigstore
// bundle's JSON (v0.1 to v0.3).
func IsSigstoreBundle(mediaType string) bool {
	return mediaType == SigstoreBundleArtifact || strings.HasPrefix(mediaType, "application/vnd.dev.sigstore.bundle+json;version=")
}

// keyless verifies Sigstore bundles signed with a Fulcio certificate
// (cosign's keyless signing), with sigstore-go against a trusted root read
// from a file: the certificate chains to a Fulcio CA of the root at a
// verified observer time (an RFC 3161 timestamp of one of the root's
// timestamp authorities, or a transparency log entry's signed timestamp),
// its subject alternative name matches identity and its OIDC issuer is
// issuer, the signature verifies with it, and the signed statement's
// subject is the digest decided.
type keyless struct {
	identity, issuer string
	// verifier requires an observer timestamp, and a transparency log
	// entry verified against one of the root's logs when the root lists
	// any (as cosign verify does).
	verifier *verify.Verifier
	policy   verify.PolicyOption
}

// keyBundles verifies Sigstore bundles signed with a cosign key: set on a
// keyed verifier. The transparency log is not consulted, as for the key's
// simple-signing signatures: a keyed signature stands on the key.
type keyBundles struct {
	verifier *verify.Verifier
}

func compileKeyless(c *Cosign, where string) (*keyless, error) {
	var errs []error
	if c.Identity == "" {
		errs = append(errs, fmt.Errorf(`%s.cosign.identity: missing (a regular expression of the certificate's subject alternative name, e.g. "https://github.com/myorg/.+/.github/workflows/release.yml@.+")`, where))
	}
	if c.Issuer == "" {
		errs = append(errs, fmt.Errorf("%s.cosign.issuer: missing (the OIDC issuer, e.g. https://token.actions.githubusercontent.com)", where))
	}
	if c.TrustedRoot == "" {
		errs = append(errs, fmt.Errorf("%s.cosign.trusted_root: missing (a Sigstore trusted_root.json: keyless verification needs its Fulcio CA and logs, and never fetches the public instance's)", where))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	san := "^(?:" + c.Identity + ")$" // the whole name, as the YAML's regexp reads
	if _, err := regexp.Compile(san); err != nil {
		return nil, fmt.Errorf("%s.cosign.identity: %q is not a regular expression: %w", where, c.Identity, err)
	}
	tr, err := root.NewTrustedRootFromPath(c.TrustedRoot)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.trusted_root: %s: %w", where, c.TrustedRoot, err)
	}
	if len(tr.FulcioCertificateAuthorities()) == 0 {
		return nil, fmt.Errorf("%s.cosign.trusted_root: %s lists no certificate authority (Fulcio)", where, c.TrustedRoot)
	}
	opts := []verify.VerifierOption{verify.WithObserverTimestamps(1)}
	if len(tr.RekorLogs()) > 0 {
		opts = append(opts, verify.WithTransparencyLog(1))
	}
	v, err := verify.NewVerifier(tr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.trusted_root: %s: %w", where, c.TrustedRoot, err)
	}
	id, err := verify.NewShortCertificateIdentity(c.Issuer, "", "", san)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.identity: %w", where, err)
	}
	return &keyless{identity: c.Identity, issuer: c.Issuer, verifier: v, policy: verify.WithCertificateIdentity(id)}, nil
}

func newKeyBundles(ver signature.Verifier) (*keyBundles, error) {
	k := root.NewExpiringKey(ver, time.Time{}, time.Time{})
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return k, nil })
	v, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return nil, err
	}
	return &keyBundles{verifier: v}, nil
}

// verify checks one signature of d: a Sigstore bundle, or a keyless
// signature of cosign's tag scheme (its certificate and timestamps in its
// layer's annotations).
func (k *keyless) verify(sig Signature, d digest.Digest, _ time.Time) (string, error) {
	var (
		b   *bundle.Bundle
		res *verify.VerificationResult
		err error
	)
	switch {
	case sig.Bundle != nil:
		if b, err = parseBundle(sig.Bundle); err != nil {
			return "", err
		}
		res, err = verifyBundle(k.verifier, b, d, k.policy)
	case sig.Payload != nil && sig.Annotations[CertificateAnnotation] != "":
		if b, err = legacyBundle(sig); err != nil {
			return "", err
		}
		res, err = k.verifyLegacy(b, sig.Payload, d)
	default:
		return "", errors.New("a signature has no certificate (keyless verification reads Sigstore bundles and cosign's keyless signatures)")
	}
	if err != nil {
		var idErr *verify.ErrNoMatchingCertificateIdentity
		if errors.As(err, &idErr) {
			return "", fmt.Errorf("a Sigstore bundle is signed by %s, not identity %q of issuer %s", certSigner(b), k.identity, k.issuer)
		}
		return "", err
	}
	return "cosign keyless " + summary(res), nil
}

// verifyBundle verifies b with v for the artifact digest d under the
// identity or key policy, and that a statement it signs is cosign's
// signature of an image (an attestation is not a signature).
func verifyBundle(v *verify.Verifier, b *bundle.Bundle, d digest.Digest, who verify.PolicyOption) (*verify.VerificationResult, error) {
	raw, err := hex.DecodeString(d.Encoded())
	if err != nil || d.Algorithm() != digest.SHA256 {
		return nil, fmt.Errorf("digest %s is not sha256", d)
	}
	res, err := v.Verify(b, verify.NewPolicy(verify.WithArtifactDigest("sha256", raw), who))
	if err != nil {
		var idErr *verify.ErrNoMatchingCertificateIdentity
		if errors.As(err, &idErr) {
			return nil, err
		}
		if digestMismatch(err) {
			return nil, fmt.Errorf("a Sigstore bundle signs another digest, not %s", d)
		}
		return nil, fmt.Errorf("a Sigstore bundle does not verify: %w", err)
	}
	if res.Statement != nil && res.Statement.GetPredicateType() != cosignSignPredicate {
		return nil, fmt.Errorf("a Sigstore bundle is an attestation (%s), not a signature (%s)", res.Statement.GetPredicateType(), cosignSignPredicate)
	}
	return res, nil
}

// verifyLegacy verifies a keyless signature of the tag scheme, b made of
// it by legacyBundle: the signature of payload, as a bundle's, then that
// the payload signs d.
func (k *keyless) verifyLegacy(b *bundle.Bundle, payload []byte, d digest.Digest) (*verify.VerificationResult, error) {
	res, err := k.verifier.Verify(b, verify.NewPolicy(verify.WithArtifact(bytes.NewReader(payload)), k.policy))
	if err != nil {
		var idErr *verify.ErrNoMatchingCertificateIdentity
		if errors.As(err, &idErr) {
			return nil, err
		}
		return nil, fmt.Errorf("a keyless signature does not verify: %w", err)
	}
	signed, err := signedDigest(payload)
	if err != nil {
		return nil, err
	}
	if signed != d.String() {
		return nil, fmt.Errorf("a keyless signature by %s signs %s, not this digest", summary(res), signed)
	}
	return res, nil
}

// legacyBundle makes a Sigstore bundle (v0.1, a message signature) of a
// keyless signature of cosign's tag scheme, as its layer's annotations
// hold it: the signing certificate (the chain annotation is not read: the
// trusted root's CA certificates are), the Rekor entry with its signed
// entry timestamp (cosign's "bundle" annotation) and an RFC 3161
// timestamp. sigstore-go then verifies it as any bundle.
func legacyBundle(sig Signature) (*bundle.Bundle, error) {
	raw, err := base64.StdEncoding.DecodeString(sig.Base64)
	if err != nil {
		return nil, errors.New("a signature is not base64")
	}
	certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(sig.Annotations[CertificateAnnotation]))
	if err != nil || len(certs) == 0 {
		return nil, errors.New("a keyless signature's certificate annotation holds no PEM certificate")
	}
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: certs[0].Raw}},
	}
	if rb := sig.Annotations[RekorBundleAnnotation]; rb != "" {
		var rekor struct {
			SignedEntryTimestamp []byte
			Payload              struct {
				Body           string `json:"body"`
				IntegratedTime int64  `json:"integratedTime"`
				LogIndex       int64  `json:"logIndex"`
				LogID          string `json:"logID"`
			}
		}
		if err := json.Unmarshal([]byte(rb), &rekor); err != nil {
			return nil, fmt.Errorf("a keyless signature's %s annotation: %w", RekorBundleAnnotation, err)
		}
		body, err := base64.StdEncoding.DecodeString(rekor.Payload.Body)
		if err != nil {
			return nil, fmt.Errorf("a keyless signature's Rekor entry is not base64: %w", err)
		}
		logID, err := hex.DecodeString(rekor.Payload.LogID)
		if err != nil {
			return nil, fmt.Errorf("a keyless signature's Rekor log ID is not hex: %w", err)
		}
		var kind struct {
			Kind       string `json:"kind"`
			APIVersion string `json:"apiVersion"`
		}
		if err := json.Unmarshal(body, &kind); err != nil {
			return nil, fmt.Errorf("a keyless signature's Rekor entry: %w", err)
		}
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{{
			LogIndex: rekor.Payload.LogIndex, LogId: &protocommon.LogId{KeyId: logID},
			KindVersion:    &protorekor.KindVersion{Kind: kind.Kind, Version: kind.APIVersion},
			IntegratedTime: rekor.Payload.IntegratedTime, CanonicalizedBody: body,
			InclusionPromise: &protorekor.InclusionPromise{SignedEntryTimestamp: rekor.SignedEntryTimestamp},
		}}
	}
	if ts := sig.Annotations[TimestampAnnotation]; ts != "" {
		var t struct{ SignedRFC3161Timestamp []byte }
		if err := json.Unmarshal([]byte(ts), &t); err != nil {
			return nil, fmt.Errorf("a keyless signature's %s annotation: %w", TimestampAnnotation, err)
		}
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{
			Rfc3161Timestamps: []*protocommon.RFC3161SignedTimestamp{{SignedTimestamp: t.SignedRFC3161Timestamp}}}
	}
	h := sha256.Sum256(sig.Payload)
	b, err := bundle.NewBundle(&protobundle.Bundle{MediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1", VerificationMaterial: vm,
		Content: &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: h[:]}, Signature: raw}}})
	if err != nil {
		return nil, fmt.Errorf("a keyless signature: %w", err)
	}
	return b, nil
}

func parseBundle(raw []byte) (*bundle.Bundle, error) {
	var b bundle.Bundle
	if err := b.UnmarshalJSON(raw); err != nil {
		return nil, fmt.Errorf("a Sigstore bundle does not parse: %w", err)
	}
	return &b, nil
}

// summary names a verified bundle's signer: the certificate's subject
// alternative name and issuer.
func summary(res *verify.VerificationResult) string {
	if res.Signature == nil || res.Signature.Certificate == nil {
		return "(no certificate)"
	}
	c := res.Signature.Certificate
	return c.SubjectAlternativeName + " (issuer " + c.Issuer + ")"
}

// certSigner names who a bundle's certificate says signed it (checked to
// chain to the trusted root when the identity is what failed).
func certSigner(b *bundle.Bundle) string {
	vc, err := b.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		return "a key, not a certificate"
	}
	s, err := certificate.SummarizeCertificate(vc.Certificate())
	if err != nil {
		return "an unreadable certificate"
	}
	return s.SubjectAlternativeName + " (issuer " + s.Issuer + ")"
}

// digestMismatch reports sigstore-go's refusal of a bundle that verifies
// but signs other digests (it has no error type for it).
func digestMismatch(err error) bool {
	for _, m := range []string{"provided artifact digest does not match", "provided artifact digests does not match", "artifact does not match digest"} {
		if strings.Contains(err.Error(), m) {
			return true
		}
	}
	return false
}
