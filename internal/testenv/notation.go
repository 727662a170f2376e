package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/notaryproject/notation-core-go/signature"
	"github.com/notaryproject/notation-core-go/signature/jws"
	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// NotationCA is a root CA made in the test that issues code-signing
// certificates, and signs images as `notation sign` does: an OCI artifact
// of type application/vnd.cncf.notary.signature referring to the image,
// its one layer a JWS envelope made by notation-core-go (notation's own
// library; the notation CLI is not packaged for this machine).
type NotationCA struct {
	root *x509.Certificate
	key  *ecdsa.PrivateKey
	// StorePath is the root as a PEM file: a trust store.
	StorePath string
}

// NewNotationCA makes a root CA.
func NewNotationCA(t testing.TB) *NotationCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "regcache test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &NotationCA{root: root, key: key, StorePath: path}
}

// Sign signs img (in host's repository, which must have the referrers API)
// with a certificate whose subject is CN=cn.
func (ca *NotationCA) Sign(t testing.TB, host string, img Image, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := signature.NewLocalSigner([]*x509.Certificate{leaf, ca.root}, key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := signature.NewEnvelope(jws.MediaTypeEnvelope)
	if err != nil {
		t.Fatal(err)
	}
	payload := fmt.Appendf(nil, `{"targetArtifact":{"mediaType":%q,"digest":%q,"size":%d}}`, img.MediaType, img.Digest, len(img.Manifest))
	envelope, err := env.Sign(&signature.SignRequest{Payload: signature.Payload{ContentType: "application/vnd.cncf.notary.payload.v1+json", Content: payload},
		Signer: signer, SigningTime: time.Now(), SigningScheme: signature.SigningSchemeX509, SigningAgent: "regcache-test"})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := name.NewRepository(host+"/"+img.Repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	layer := static.NewLayer(envelope, types.MediaType(jws.MediaTypeEnvelope))
	// The config's media type is the artifact type too, as notation writes
	// it for registries that list referrers by it (go-containerregistry's).
	empty := static.NewLayer([]byte("{}"), "application/vnd.cncf.notary.signature")
	if err := remote.WriteLayer(repo, layer); err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteLayer(repo, empty); err != nil {
		t.Fatal(err)
	}
	desc := func(l ggcrv1.Layer, mt string) v1.Descriptor {
		d, _ := l.Digest()
		n, _ := l.Size()
		return v1.Descriptor{MediaType: mt, Digest: digest.Digest(d.String()), Size: n}
	}
	m := v1.Manifest{MediaType: v1.MediaTypeImageManifest, ArtifactType: "application/vnd.cncf.notary.signature",
		Config: desc(empty, "application/vnd.cncf.notary.signature"), Layers: []v1.Descriptor{desc(layer, jws.MediaTypeEnvelope)},
		Subject: &v1.Descriptor{MediaType: img.MediaType, Digest: img.Digest, Size: int64(len(img.Manifest))}}
	m.SchemaVersion = 2
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ref := repo.Digest(digest.FromBytes(body).String())
	if err := remote.Put(ref, rawManifest{body, types.OCIManifestSchema1}); err != nil {
		t.Fatal(err)
	}
	// The referrers tag schema, as notation keeps it on registries without
	// the referrers API (written here whatever the registry: harmless where
	// the API answers).
	idx := v1.Index{MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{{MediaType: v1.MediaTypeImageManifest,
		Digest: digest.FromBytes(body), Size: int64(len(body)), ArtifactType: "application/vnd.cncf.notary.signature"}}}
	idx.SchemaVersion = 2
	ib, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(repo.Tag(img.Digest.Algorithm().String()+"-"+img.Digest.Encoded()), rawManifest{ib, types.OCIImageIndex}); err != nil {
		t.Fatal(err)
	}
}

// rawManifest is a manifest's bytes for remote.Put.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.body, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }
