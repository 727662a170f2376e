package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Auth selects how a Distribution authenticates clients.
type Auth int

// Authentication modes of a Distribution.
const (
	// AuthNone lets anyone pull and push.
	AuthNone Auth = iota
	// AuthHtpasswd requires basic auth with the returned user and password.
	AuthHtpasswd
	// AuthToken uses Distribution's bearer-token auth against a token
	// server of ours: the user gets every action, anonymous gets pull on
	// repositories not listed in DistributionOptions.Private.
	AuthToken
)

// DistributionService is the service (JWT audience) in AuthToken mode.
const DistributionService = "regcache-testenv-registry"

// DistributionIssuer is the JWT issuer in AuthToken mode.
const DistributionIssuer = "regcache-testenv-token-issuer"

// DistributionOptions configures NewDistribution.
type DistributionOptions struct {
	Auth Auth
	// Username and Password default to "regcache" and a random password.
	Username string
	Password string
	// Private lists repositories anonymous tokens cannot pull (AuthToken).
	Private []string
	// ProxyRemoteURL, when set, runs the registry as a pull-through cache
	// of that URL, with the optional upstream credentials.
	ProxyRemoteURL string
	ProxyUsername  string
	ProxyPassword  string
}

// Distribution is a running Debian docker-registry (Distribution 2.8).
type Distribution struct {
	// URL is http://127.0.0.1:port.
	URL string
	// Host is 127.0.0.1:port.
	Host string
	// Username and Password are accepted in AuthHtpasswd and AuthToken modes.
	Username string
	Password string
	// TokenURL is the token realm in AuthToken mode (host "localhost").
	TokenURL string
	// TokenRequests counts requests to the token server (0 without AuthToken).
	TokenRequests func() int
	// PID is the process id; Start changes it.
	PID int
	// Stop kills the registry and waits for it. Calling it twice is fine.
	Stop func()
	// Start restarts a stopped registry on the same port and storage, and
	// waits until it answers. It does nothing while the registry runs.
	Start func()
	// Dir holds config.yml, the storage root and registry.log.
	Dir string
	// LogFile is the registry's combined stdout and stderr.
	LogFile string
}

// NewDistribution starts Debian's docker-registry on a free loopback port
// with filesystem storage in a temporary directory. It skips the test when
// docker-registry is not installed (fails when CI=true). The registry is
// killed at cleanup, and its log is printed if the test failed.
func NewDistribution(t testing.TB, opts DistributionOptions) *Distribution {
	t.Helper()
	bin := RequireTool(t, "docker-registry")
	dir := t.TempDir()
	d := &Distribution{Dir: dir, LogFile: filepath.Join(dir, "registry.log"), TokenRequests: func() int { return 0 }}
	port := FreePort(t)
	d.Host = "127.0.0.1:" + strconv.Itoa(port)
	d.URL = "http://" + d.Host

	if opts.Auth != AuthNone {
		d.Username, d.Password = opts.Username, opts.Password
		if d.Username == "" {
			d.Username = "regcache"
		}
		if d.Password == "" {
			d.Password = randomHex(12)
		}
	}

	cfg := map[string]any{
		"version": "0.1",
		"log": map[string]any{
			"level":     "warn",
			"formatter": "text",
			"accesslog": map[string]any{"disabled": true},
		},
		"storage": map[string]any{
			"filesystem":  map[string]any{"rootdirectory": filepath.Join(dir, "storage")},
			"delete":      map[string]any{"enabled": true},
			"maintenance": map[string]any{"uploadpurging": map[string]any{"enabled": false}},
		},
		"http": map[string]any{
			"addr":   d.Host,
			"secret": randomHex(16),
		},
	}
	switch opts.Auth {
	case AuthHtpasswd:
		hash, err := bcrypt.GenerateFromPassword([]byte(d.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("bcrypt: %v", err)
		}
		path := filepath.Join(dir, "htpasswd")
		writeFile(t, path, d.Username+":"+string(hash)+"\n")
		cfg["auth"] = map[string]any{"htpasswd": map[string]any{"realm": "regcache-testenv", "path": path}}
	case AuthToken:
		signer := newJWTSigner(t)
		bundle := filepath.Join(dir, "token-root.pem")
		writeFile(t, bundle, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signer.certDER})))
		ts := newTokenService(DistributionService, signer.issue)
		ts.setCredentials(d.Username, d.Password)
		for _, repo := range opts.Private {
			ts.setPrivate(repo, true)
		}
		srv := startServer(t, ts)
		d.TokenURL = "http://localhost:" + srv.port() + "/token"
		d.TokenRequests = ts.count
		cfg["auth"] = map[string]any{"token": map[string]any{
			"realm":          d.TokenURL,
			"service":        DistributionService,
			"issuer":         DistributionIssuer,
			"rootcertbundle": bundle,
		}}
	}
	if opts.ProxyRemoteURL != "" {
		proxy := map[string]any{"remoteurl": opts.ProxyRemoteURL}
		if opts.ProxyUsername != "" {
			proxy["username"] = opts.ProxyUsername
			proxy["password"] = opts.ProxyPassword
		}
		cfg["proxy"] = proxy
	}
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshal registry config: %v", err)
	}
	configPath := filepath.Join(dir, "config.yml")
	writeFile(t, configPath, string(raw))

	var (
		mu   sync.Mutex
		cmd  *exec.Cmd
		done chan struct{}
	)
	d.Stop = func() {
		mu.Lock()
		defer mu.Unlock()
		if cmd == nil {
			return
		}
		cmd.Process.Kill()
		<-done
		cmd = nil
	}
	d.Start = func() {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if cmd != nil {
			return
		}
		logf, err := os.OpenFile(d.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatalf("registry log: %v", err)
		}
		c := exec.Command(bin, "serve", configPath)
		c.Stdout, c.Stderr = logf, logf
		// Die with the test binary even if cleanup never runs.
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			logf.Close()
			t.Fatalf("start docker-registry: %v", err)
		}
		logf.Close()
		ch := make(chan struct{})
		go func() { c.Wait(); close(ch) }()
		cmd, done, d.PID = c, ch, c.Process.Pid
		if err := d.waitReady(ch); err != nil {
			c.Process.Kill()
			<-ch
			cmd = nil
			t.Fatalf("docker-registry not ready: %v\n%s", err, readTail(d.LogFile))
		}
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("docker-registry log (%s):\n%s", d.LogFile, readTail(d.LogFile))
		}
	})
	d.Start()
	return d
}

// waitReady polls /v2/ until it answers, or fails when the process exits.
func (d *Distribution) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("docker-registry exited")
		default:
		}
		// waitHTTP with a short timeout so an early exit is noticed quickly.
		if err := waitHTTP(context.Background(), d.URL+"/v2/", 200*time.Millisecond); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no answer on %s/v2/ within 15s", d.URL)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const tail = 16 << 10
	if len(b) > tail {
		b = b[len(b)-tail:]
	}
	return string(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// jwtSigner signs Distribution 2.8 tokens: ES256 with the signing
// certificate in the x5c header, verified against rootcertbundle.
type jwtSigner struct {
	key     *ecdsa.PrivateKey
	certDER []byte
}

func newJWTSigner(t testing.TB) *jwtSigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("token key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "regcache testenv token signer"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("token certificate: %v", err)
	}
	return &jwtSigner{key: key, certDER: der}
}

func (j *jwtSigner) issue(subject string, access []resourceActions, ttl time.Duration) (string, error) {
	header := map[string]any{
		"typ": "JWT",
		"alg": "ES256",
		"x5c": []string{base64.StdEncoding.EncodeToString(j.certDER)},
	}
	now := time.Now()
	if access == nil {
		access = []resourceActions{}
	}
	claims := map[string]any{
		"iss":    DistributionIssuer,
		"sub":    subject,
		"aud":    DistributionService,
		"exp":    now.Add(ttl).Unix(),
		"nbf":    now.Add(-time.Second).Unix(),
		"iat":    now.Unix(),
		"jti":    randomHex(16),
		"access": access,
	}
	hb, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	sum := sha256.Sum256([]byte(signed))
	r, s, err := ecdsa.Sign(rand.Reader, j.key, sum[:])
	if err != nil {
		return "", err
	}
	// JWS ES256 signatures are r and s as fixed 32-byte big-endian halves.
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signed + "." + enc.EncodeToString(sig), nil
}
