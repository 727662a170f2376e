package testenv

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"
)

// SigstoreBundleType is the media type (and referrer artifact type) of a
// Sigstore bundle v0.3, as cosign sign --new-bundle-format stores it.
const SigstoreBundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// CosignSignPredicate is the in-toto predicate type of cosign's image
// signatures in a bundle.
const CosignSignPredicate = "https://sigstore.dev/cosign/sign/v1"

// Sigstore is a Sigstore instance made in the test with sigstore-go's
// testing CA (a Fulcio CA, a Rekor log, a timestamp authority, all with
// keys of their own): it issues short-lived certificates to OIDC
// identities and signs images with them as cosign's keyless signing does.
type Sigstore struct {
	vs *ca.VirtualSigstore
	// TrustedRoot is the instance's trusted_root.json.
	TrustedRoot string
}

// NewSigstore makes an instance and writes its trusted root.
func NewSigstore(t testing.TB) *Sigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		t.Fatal(err)
	}
	// The testing CA names its logs by the hex of their key IDs, but a
	// trusted root file holds the raw key ID: fixed here, so that the
	// Rekor entries it writes verify against the file.
	logs := vs.RekorLogs()
	for id, l := range logs {
		raw, err := hex.DecodeString(id)
		if err != nil {
			t.Fatal(err)
		}
		l.ID = raw
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, vs.FulcioCertificateAuthorities(), vs.CTLogs(),
		vs.TimestampingAuthorities(), logs)
	if err != nil {
		t.Fatal(err)
	}
	js, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(path, js, 0o644); err != nil {
		t.Fatal(err)
	}
	return &Sigstore{vs: vs, TrustedRoot: path}
}

// Statement is an in-toto statement whose subject is d, of the predicate
// type given (CosignSignPredicate for a signature).
func Statement(d digest.Digest, predicateType string) []byte {
	return fmt.Appendf(nil, `{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":{%q:%q}}],"predicateType":%q}`,
		d.Algorithm().String(), d.Encoded(), predicateType)
}

// Bundle signs statement with a certificate issued to identity by
// issuer, and returns the Sigstore bundle's JSON: the certificate, the
// DSSE envelope, the Rekor entry (with its inclusion promise and proof)
// and an RFC 3161 timestamp.
func (s *Sigstore) Bundle(t testing.TB, identity, issuer string, statement []byte) []byte {
	t.Helper()
	e, err := s.vs.AttestAtTime(identity, issuer, statement, time.Now().Add(5*time.Minute), true)
	if err != nil {
		t.Fatal(err)
	}
	vc, sc, tss, entries := entityParts(t, e)
	vm := &protobundle.VerificationMaterial{
		Content:                   &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		TimestampVerificationData: &protobundle.TimestampVerificationData{},
	}
	for _, ts := range tss {
		vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps, &protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
	}
	for _, entry := range entries {
		tle, set := s.promise(t, entry)
		tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
		tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
		vm.TlogEntries = append(vm.TlogEntries, tle)
	}
	return marshalBundle(t, vm, envelopeProto(t, sc.EnvelopeContent().RawEnvelope()))
}

// entityParts are the pieces of a signed entity of the testing CA that a
// bundle, or cosign's annotations, are made of: the certificate, the
// signature, the RFC 3161 timestamps and the Rekor entries.
func entityParts(t testing.TB, e *ca.TestEntity) (verify.VerificationContent, verify.SignatureContent, [][]byte, []*tlog.Entry) {
	t.Helper()
	vc, err := e.VerificationContent()
	if err != nil {
		t.Fatal(err)
	}
	sc, err := e.SignatureContent()
	if err != nil {
		t.Fatal(err)
	}
	tss, err := e.Timestamps()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := e.TlogEntries()
	if err != nil {
		t.Fatal(err)
	}
	return vc, sc, tss, entries
}

// promise is a Rekor entry as a bundle holds it, with its signed entry
// timestamp (the log's promise to include it) signed by the log's key.
func (s *Sigstore) promise(t testing.TB, entry *tlog.Entry) (*protorekor.TransparencyLogEntry, []byte) {
	t.Helper()
	tle := entry.TransparencyLogEntry()
	set, err := s.vs.RekorSignPayload(tlog.RekorPayload{Body: entry.Body(), IntegratedTime: tle.IntegratedTime,
		LogIndex: tle.LogIndex, LogID: hex.EncodeToString(tle.LogId.KeyId)})
	if err != nil {
		t.Fatal(err)
	}
	return tle, set
}

// SimpleSigningPayload is the payload cosign signs for d in its tag
// scheme.
func SimpleSigningPayload(host, repo string, d digest.Digest) []byte {
	return fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":"%s/%s"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, host, repo, d)
}

// SignLegacy signs payload with a certificate issued to identity by
// issuer, as cosign's keyless signing writes it in its tag scheme: the
// signature (base64) and the layer's annotations (the certificate and its
// chain as PEM, the Rekor entry with its signed entry timestamp as
// cosign's "bundle", an RFC 3161 timestamp).
func (s *Sigstore) SignLegacy(t testing.TB, identity, issuer string, payload []byte) (string, map[string]string) {
	t.Helper()
	e, err := s.vs.Sign(identity, issuer, payload)
	if err != nil {
		t.Fatal(err)
	}
	vc, sc, tss, entries := entityParts(t, e)
	tle, set := s.promise(t, entries[0])
	rekor, err := json.Marshal(map[string]any{"SignedEntryTimestamp": set, "Payload": map[string]any{"body": entries[0].Body(),
		"integratedTime": tle.IntegratedTime, "logIndex": tle.LogIndex, "logID": hex.EncodeToString(tle.LogId.KeyId)}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := json.Marshal(map[string][]byte{"SignedRFC3161Timestamp": tss[0]})
	if err != nil {
		t.Fatal(err)
	}
	var chain []byte
	for _, c := range s.vs.FulcioCertificateAuthorities()[0].(*root.FulcioCertificateAuthority).Intermediates {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return base64.StdEncoding.EncodeToString(sc.Signature()), map[string]string{
		"dev.sigstore.cosign/certificate":      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: vc.Certificate().Raw})),
		"dev.sigstore.cosign/chain":            string(chain),
		"dev.sigstore.cosign/bundle":           string(rekor),
		"dev.sigstore.cosign/rfc3161timestamp": string(ts),
	}
}

// SignTag pushes a keyless signature of img (payload, as SignLegacy
// signs it) to host in cosign's tag scheme: a manifest tagged
// sha256-<hex>.sig whose layer is the payload, with the signature and
// SignLegacy's annotations.
func (s *Sigstore) SignTag(t testing.TB, host string, img Image, identity, issuer string, payload []byte) {
	t.Helper()
	sig, ann := s.SignLegacy(t, identity, issuer, payload)
	ann["dev.cosignproject.cosign/signature"] = sig
	sigImg, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer: static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"), Annotations: ann})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(host+"/"+img.Repo+":"+img.Digest.Algorithm().String()+"-"+img.Digest.Encoded()+".sig", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, sigImg); err != nil {
		t.Fatal(err)
	}
}

// KeyBundle signs statement with a cosign key and returns the Sigstore
// bundle's JSON, as cosign sign --new-bundle-format --key writes it with
// --tlog-upload=false: the public key's hint, the DSSE envelope, no log
// entry.
func (k CosignKey) KeyBundle(t testing.TB, statement []byte) []byte {
	t.Helper()
	pae := dsse.PAE("application/vnd.in-toto+json", statement)
	h := sha256.Sum256(pae)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	hint := sha256.Sum256(der)
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: base64.StdEncoding.EncodeToString(hint[:])}},
	}
	env := &dsse.Envelope{PayloadType: "application/vnd.in-toto+json", Payload: base64.StdEncoding.EncodeToString(statement),
		Signatures: []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}}}
	return marshalBundle(t, vm, envelopeProto(t, env))
}

func envelopeProto(t testing.TB, env *dsse.Envelope) *protodsse.Envelope {
	t.Helper()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		t.Fatal(err)
	}
	out := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for _, s := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			t.Fatal(err)
		}
		out.Signatures = append(out.Signatures, &protodsse.Signature{Sig: raw, Keyid: s.KeyID})
	}
	return out
}

func marshalBundle(t testing.TB, vm *protobundle.VerificationMaterial, env *protodsse.Envelope) []byte {
	t.Helper()
	js, err := protojson.Marshal(&protobundle.Bundle{MediaType: SigstoreBundleType, VerificationMaterial: vm,
		Content: &protobundle.Bundle_DsseEnvelope{DsseEnvelope: env}})
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// PushBundle stores a Sigstore bundle in host/repo (a plain-HTTP
// registry) as cosign sign --new-bundle-format does: an OCI 1.1 referrer
// of the image img, of artifact type SigstoreBundleType, its one layer the
// bundle; and adds it to the referrers tag schema's index (sha256-<hex>),
// as clients keep it on registries without the referrers API, listed with
// its artifact type (where cosign, through go-containerregistry, lists the
// config's media type).
func PushBundle(t testing.TB, host string, img Image, bundle []byte) {
	t.Helper()
	repo, err := name.NewRepository(host+"/"+img.Repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	layer := static.NewLayer(bundle, SigstoreBundleType)
	config := static.NewLayer([]byte("{}"), types.MediaType(v1.MediaTypeEmptyJSON)) // as cosign writes it
	desc := func(l ggcrv1.Layer, mt string) v1.Descriptor {
		d, _ := l.Digest()
		n, _ := l.Size()
		return v1.Descriptor{MediaType: mt, Digest: digest.Digest(d.String()), Size: n}
	}
	for _, l := range []ggcrv1.Layer{layer, config} {
		if err := remote.WriteLayer(repo, l); err != nil {
			t.Fatal(err)
		}
	}
	m := v1.Manifest{MediaType: v1.MediaTypeImageManifest, ArtifactType: SigstoreBundleType,
		Config: desc(config, v1.MediaTypeEmptyJSON), Layers: []v1.Descriptor{desc(layer, SigstoreBundleType)},
		Subject:     &v1.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: int64(len(img.Manifest))},
		Annotations: map[string]string{"dev.sigstore.bundle.content": "dsse-envelope", "dev.sigstore.bundle.predicateType": CosignSignPredicate}}
	m.SchemaVersion = 2
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo.Digest(digest.FromBytes(body).String()), rawManifest{body, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	tag := repo.Tag(img.Digest.Algorithm().String() + "-" + img.Digest.Encoded())
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	if old, err := remote.Get(tag); err == nil {
		if err := json.Unmarshal(old.Manifest, &idx); err != nil {
			t.Fatal(err)
		}
	}
	idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromBytes(body),
		Size: int64(len(body)), ArtifactType: SigstoreBundleType})
	ib, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(tag, rawManifest{ib, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}
}
