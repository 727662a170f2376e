package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// CosignVersion is the cosign CLI the pull policy's tests sign images
// with, built from the Go module proxy (v2.6.5 builds on Go 1.25 and up).
// .ci/run builds it once into CosignCache.
const CosignVersion = "github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5"

// CosignCache is where .ci/run keeps the built cosign CLI, outside the
// clone, so it is built once per machine.
const CosignCache = "/var/cache/regcache-ci/bin/cosign"

// Cosign runs the cosign CLI against loopback registries, with a
// password for its keys and no network beyond loopback (every proxy
// variable points at a closed port, so a call to the public Sigstore
// instance fails instead of leaving the machine).
type Cosign struct {
	t    testing.TB
	Path string
	// Password encrypts the keys generate-key-pair writes.
	Password string
}

// NewCosign finds the cosign CLI: $REGCACHE_COSIGN, the CI cache, or
// PATH; missing, the test is skipped, or fails with CI=true.
func NewCosign(t testing.TB) *Cosign {
	t.Helper()
	c := &Cosign{t: t, Password: "regcache-test-" + randomHex(8)}
	switch p := os.Getenv("REGCACHE_COSIGN"); {
	case p != "":
		c.Path = p
	default:
		if _, err := os.Stat(CosignCache); err == nil {
			c.Path = CosignCache
		} else if p, err := exec.LookPath("cosign"); err == nil {
			c.Path = p
		}
	}
	if c.Path == "" {
		msg := "cosign not found: run .ci/run, or build it with GOBIN=" + filepath.Dir(CosignCache) +
			" GOFLAGS=-p=1 nice -n 19 go install " + CosignVersion
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipping")
	}
	return c
}

// KeyPair generates a key pair in a new directory and returns the paths
// of the private key (encrypted with c.Password) and the public key.
func (c *Cosign) KeyPair() (key, pub string) {
	c.t.Helper()
	dir := c.t.TempDir()
	c.run(dir, "generate-key-pair")
	return filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
}

// Sign signs ref (host/repo@digest on a plain-HTTP loopback registry) with
// key, in cosign's tag scheme, without the transparency log.
func (c *Cosign) Sign(key, ref string) {
	c.t.Helper()
	c.run("", "sign", "--key", key, "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", "--yes", ref)
}

// SignReferrer signs ref like Sign, but stores the signature as an OCI 1.1
// referrer of the digest (--registry-referrers-mode=oci-1-1, an
// experimental mode of cosign 2) instead of under the tag scheme.
func (c *Cosign) SignReferrer(key, ref string) {
	c.t.Helper()
	c.run("", "sign", "--key", key, "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", "--yes",
		"--registry-referrers-mode=oci-1-1", ref)
}

// SignBundle signs ref like Sign, but writes a Sigstore bundle stored as
// an OCI 1.1 referrer of the digest (--new-bundle-format, the format
// cosign 3 writes by default).
func (c *Cosign) SignBundle(key, ref string) {
	c.t.Helper()
	c.run("", "sign", "--key", key, "--tlog-upload=false", "--allow-insecure-registry", "--allow-http-registry", "--yes",
		"--new-bundle-format", ref)
}

// Verify runs cosign verify of ref with the public key, without the
// transparency log, and returns its error and output.
func (c *Cosign) Verify(pub, ref string, extra ...string) (string, error) {
	c.t.Helper()
	return c.output("", append([]string{"verify", "--key", pub, "--insecure-ignore-tlog", "--allow-insecure-registry", "--allow-http-registry"}, append(extra, ref)...)...)
}

func (c *Cosign) run(dir string, args ...string) {
	c.t.Helper()
	if out, err := c.output(dir, args...); err != nil {
		c.t.Fatalf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *Cosign) output(dir string, args ...string) (string, error) {
	cmd := exec.Command(c.Path, args...)
	cmd.Dir = dir
	home := c.t.TempDir()
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+c.Password, "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"),
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost",
		"COSIGN_EXPERIMENTAL=1", "SIGSTORE_NO_CACHE=1")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// CosignKey is a P-256 key pair made in the test, its public half written
// as cosign writes cosign.pub, for tests that need many signatures fast
// (the cosign CLI signs the end-to-end tests).
type CosignKey struct {
	priv *ecdsa.PrivateKey
	// Pub is the PEM public key's file.
	Pub string
}

// NewCosignKey makes a key pair.
func NewCosignKey(t testing.TB) CosignKey {
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
	return CosignKey{k, path}
}

// Sign pushes a signature of d to host/repo as `cosign sign --key` writes
// it in the tag scheme: a manifest tagged sha256-<hex>.sig whose layer is
// the simple-signing payload, its signature in the layer's annotation.
func (k CosignKey) Sign(t testing.TB, host, repo string, d digest.Digest) {
	t.Helper()
	payload := fmt.Appendf(nil, `{"critical":{"identity":{"docker-reference":"%s/%s"},"image":{"docker-manifest-digest":%q},"type":"cosign container image signature"},"optional":null}`, host, repo, d)
	h := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.Append(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mutate.Addendum{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(host+"/"+repo+":"+d.Algorithm().String()+"-"+d.Encoded()+".sig", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
}
