package certfile

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed pair for cn, its files stamped at mod.
func writePair(t *testing.T, certFile, keyFile, cn string, mod time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
}

func served(t *testing.T, p *Pair) string {
	t.Helper()
	c, err := p.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

// A pair rewritten in place is served from the next handshake a second
// later; a broken rewrite keeps the old pair, by file change and by
// Reload alike, and Reload takes a good pair at once.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	start := time.Now().Add(-time.Minute)
	writePair(t, cert, key, "one", start)
	p, err := Load(cert, key, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if got := served(t, p); got != "one" {
		t.Fatalf("served %q, want one", got)
	}

	writePair(t, cert, key, "two", start.Add(10*time.Second))
	p.checked = time.Time{} // the second between checks has passed
	if got := served(t, p); got != "two" {
		t.Fatalf("after a rewrite served %q, want two", got)
	}

	if err := os.WriteFile(key, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.checked = time.Time{}
	if got := served(t, p); got != "two" {
		t.Fatalf("with a broken key served %q, want the old pair", got)
	}
	if err := p.Reload(); err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("Reload of a broken pair: %v, want an error naming %s", err, key)
	}
	if got := served(t, p); got != "two" {
		t.Fatalf("after a failed Reload served %q, want the old pair", got)
	}

	writePair(t, cert, key, "three", start.Add(20*time.Second))
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, p); got != "three" {
		t.Fatalf("after Reload served %q, want three", got)
	}
	if p.CertFile() != cert {
		t.Errorf("CertFile %q, want %q", p.CertFile(), cert)
	}
}

func TestLoadNamesTheFiles(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	_, err := Load(cert, key, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), cert) || !strings.Contains(err.Error(), key) {
		t.Fatalf("Load of missing files: %v, want an error naming both", err)
	}
}
