package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/internal/testenv"
)

// writeCert writes a self-signed pair for 127.0.0.1 named cn.
func writeCert(t *testing.T, certPath, keyPath, cn string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: nil, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeHtpasswd writes a one-user bcrypt htpasswd file.
func writeHtpasswd(t *testing.T, path, user, pw string) {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(user+":"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// keepTimes sets the files' times back to what they were, so a rewrite is
// invisible to the reloaders that watch modification times: only SIGHUP
// can make the mirror see it.
func keepTimes(t *testing.T, times map[string]time.Time) {
	t.Helper()
	for p, mt := range times {
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
}

func modTimes(t *testing.T, paths ...string) map[string]time.Time {
	t.Helper()
	m := map[string]time.Time{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		m[p] = fi.ModTime()
	}
	return m
}

// waitLog waits until the log file holds n lines containing s.
func waitLog(t *testing.T, logPath, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Count(string(b), s) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d× %q in the log after 20s:\n%s", n, s, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSIGHUPReloads: the real program, serving TLS with logins, is sent
// SIGHUP after its certificate pair and htpasswd file were replaced (with
// their old modification times, so only the signal can reveal them): the
// old login is refused and the new one accepted on the connection opened
// before, new connections get the new certificate, a changed allow-list
// applies, a configuration that does not load changes nothing, and the
// process never stops.
func TestSIGHUPReloads(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.Seed(t)
	dir := t.TempDir()
	certPath, keyPath, htpasswd := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "htpasswd")
	writeCert(t, certPath, keyPath, "first")
	writeHtpasswd(t, htpasswd, "alice", "old-password")
	cfgPath := filepath.Join(dir, "regcache.yaml")
	writeConfig := func(allow string, more ...string) {
		yaml := fmt.Sprintf("tls: {cert: %s, key: %s}\naccess: {htpasswd: %s, allow: [%s]}\nlog: {level: info}\n", certPath, keyPath, htpasswd, allow)
		yaml += strings.Join(more, "")
		if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig("127.0.0.0/8")
	logPath := filepath.Join(dir, "regcache.log")
	c := startChild(t, []string{"REGCACHE_CONFIG=" + cfgPath, "REGCACHE_DATA=" + filepath.Join(dir, "data"),
		"REGCACHE_UPSTREAM_URL=" + hub.URL, "REGCACHE_ADMIN_ADDR="}, logPath)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("regcache log:\n%s", b)
		}
	}()
	defer c.stop(t)

	var peerCN string
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		InsecureSkipVerify: true, // self-signed; the test reads the name it was given
		VerifyConnection: func(cs tls.ConnectionState) error {
			peerCN = cs.PeerCertificates[0].Subject.CommonName
			return nil
		}}}}
	get := func(user, pw string) (status int, reused bool) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+c.addr+"/v2/", nil)
		req.SetBasicAuth(user, pw)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET /v2/ as %s: %v", user, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, reused
	}
	if st, _ := get("alice", "old-password"); st != 200 || peerCN != "first" {
		t.Fatalf("before the reload: status %d, certificate %q; want 200 and first", st, peerCN)
	}

	times := modTimes(t, certPath, keyPath, htpasswd)
	writeCert(t, certPath, keyPath, "second")
	writeHtpasswd(t, htpasswd, "alice", "new-password")
	keepTimes(t, times)
	c.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logPath, "SIGHUP: configuration reloaded", 1)
	b, _ := os.ReadFile(logPath)
	for _, want := range []string{"tls (" + certPath + ")", "access.htpasswd (1 users)"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the reload log line does not name %q", want)
		}
	}
	st, reused := get("alice", "old-password")
	if st != http.StatusUnauthorized {
		t.Errorf("old password after the reload: status %d, want 401", st)
	}
	if !reused {
		t.Error("the connection opened before SIGHUP was not reused: the reload dropped it")
	}
	if st, _ := get("alice", "new-password"); st != 200 {
		t.Errorf("new password after the reload: status %d, want 200", st)
	}
	client.CloseIdleConnections()
	if get("alice", "new-password"); peerCN != "second" {
		t.Errorf("a new connection got certificate %q, want second", peerCN)
	}

	// A configuration that does not load keeps everything as it is.
	if err := os.WriteFile(cfgPath, []byte("access: {allow: [not-a-network]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logPath, "keeping the running one", 1)
	if st, _ := get("alice", "new-password"); st != 200 {
		t.Errorf("after a bad reload: status %d, want 200", st)
	}

	// The allow-list is reloaded: loopback is no longer in it. Options of
	// each reload class are named in their list: a scrub setting applied,
	// the probe interval and an upstream's fallback for a restart.
	writeConfig("10.0.0.0/8", "storage: {scrub_interval: 1h}\nprobe_interval: 1m\n",
		"upstreams: [{name: docker.io, url: '"+hub.URL+"', fallback: [mirror.gcr.io]}, {name: mirror.gcr.io, url: 'http://127.0.0.1:9'}]\n")
	c.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logPath, "SIGHUP: configuration reloaded", 2)
	var line struct {
		Reloaded    []string `json:"reloaded"`
		NeedRestart []string `json:"need_restart"`
	}
	b, _ = os.ReadFile(logPath)
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, "SIGHUP: configuration reloaded") && strings.Contains(l, "probe_interval") {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.ContainsFunc(line.Reloaded, func(s string) bool { return strings.HasPrefix(s, "storage.scrub_interval") }) ||
		!slices.ContainsFunc(line.Reloaded, func(s string) bool { return strings.HasPrefix(s, "access.allow") }) ||
		!slices.Equal(line.NeedRestart, []string{"probe_interval", "upstreams"}) {
		t.Errorf("reload named reloaded %q, need_restart %q", line.Reloaded, line.NeedRestart)
	}
	if st, _ := get("alice", "new-password"); st != http.StatusForbidden {
		t.Errorf("after the allow-list left loopback out: status %d, want 403", st)
	}
	if err := c.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("regcache is gone after three SIGHUPs: %v", err)
	}
}

// TestSIGTERMDrainsAPull: SIGTERM in the middle of a cold, throttled blob
// pull lets that pull finish with the right bytes, then the program exits
// 0 and says it drained.
func TestSIGTERMDrainsAPull(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(8<<20))
	layer := imgs.Big.Layers[0]
	hub.SetFault(testenv.AllBlobs, testenv.Throttle(2<<20)) // about 4 s for the layer
	dir := t.TempDir()
	logPath := filepath.Join(dir, "regcache.log")
	c := startChild(t, []string{"REGCACHE_DATA=" + filepath.Join(dir, "data"), "REGCACHE_UPSTREAM_URL=" + hub.URL,
		"REGCACHE_ADMIN_ADDR=", "REGCACHE_PREFETCH=false"}, logPath)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("regcache log:\n%s", b)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+c.addr+"/v2/"+imgs.Big.Repo+"/blobs/"+string(layer.Digest), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, resp.Body, 256<<10); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatalf("the pull was cut by SIGTERM after %d more bytes: %v", n, err)
	}
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != string(layer.Digest) {
		t.Fatalf("pulled %s, want %s", got, layer.Digest)
	}
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after the drain: %v", err)
		}
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
		t.Fatal("regcache did not exit after the drain")
	}
	c.log.Close()
	b, _ := os.ReadFile(logPath)
	for _, want := range []string{"draining responses in flight", `"msg":"stopped"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the log has no %q", want)
		}
	}
}
