package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
