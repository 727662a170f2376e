package apptest_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// secrets collects every credential and token a test handed out, for the
// log scan at its end.
type secrets struct {
	mu      sync.Mutex
	values  []string
	mirrors []*apptest.Mirror
}

func (s *secrets) add(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values = append(s.values, v...)
}

func (s *secrets) mirror(m *apptest.Mirror) *apptest.Mirror {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mirrors = append(s.mirrors, m)
	return m
}

// scan fails the test if any secret, or anything that looks like a token
// regcache issued (they all start with "rc1."), is in a mirror's log.
func (s *secrets) scan(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range s.mirrors {
		log := m.Log()
		if log == "" {
			t.Errorf("mirror %d logged nothing: the scan would prove nothing", i)
		}
		for _, v := range s.values {
			if v != "" && strings.Contains(log, v) {
				t.Errorf("mirror %d's log contains a secret (%d bytes, starting %.3q)", i, len(v), v)
			}
		}
		if strings.Contains(log, `rc1.`) {
			t.Errorf("mirror %d's log contains a regcache token", i)
		}
	}
}

// fixture is an upstream with credentials, a public and a private
// repository, and client logins.
type fixture struct {
	hub        *testenv.Hub // nil for a Distribution upstream
	upURL      string
	upUser     string
	upPassword string
	pub, priv  testenv.Image
	htpasswd   string
	config     string // YAML with access.users
	users      map[string]string
	s          *secrets
	want       map[string][]byte // path → the bytes a GET should answer
}

func randomSecret(prefix string) string {
	b := make([]byte, 12)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// newHubFixture uses the Docker Hub stand-in. It serves any blob under any
// repository name, so it cannot show the cross-repository probe refused.
func newHubFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{hub: testenv.NewHub(t), upUser: "mirror", upPassword: randomSecret("up-")}
	f.upURL = f.hub.URL
	f.hub.SetCredentials(f.upUser, f.upPassword)
	f.pub = f.hub.Seed(t, testenv.WithPrefix("pub/"), testenv.WithSeed(1)).Single
	f.priv = f.hub.Seed(t, testenv.WithPrefix("team/"), testenv.WithSeed(2)).Single
	f.hub.SetPrivate(f.priv.Repo, true)
	f.setup(t, f.hub.Host)
	return f
}

// newDistributionFixture uses Debian's docker-registry with token auth:
// anonymous tokens cannot read team/single, and blobs are linked per
// repository as on Docker Hub.
func newDistributionFixture(t *testing.T) *fixture {
	t.Helper()
	up := testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthToken, Password: randomSecret("up-"), Private: []string{"team/single"}})
	f := &fixture{upURL: up.URL, upUser: up.Username, upPassword: up.Password}
	basic := &authn.Basic{Username: up.Username, Password: up.Password}
	f.pub = testenv.Seed(t, up.Host, basic, testenv.WithPrefix("pub/"), testenv.WithSeed(1)).Single
	f.priv = testenv.Seed(t, up.Host, basic, testenv.WithPrefix("team/"), testenv.WithSeed(2)).Single
	f.setup(t, up.Host)
	return f
}

func (f *fixture) setup(t *testing.T, upHost string) {
	t.Helper()
	f.s = &secrets{}
	f.users = map[string]string{"alice": randomSecret("alice-"), "bob": randomSecret("bob-")}
	f.want = map[string][]byte{}
	dir := t.TempDir()
	var ht strings.Builder
	for u, pw := range f.users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&ht, "%s:%s\n", u, h)
		f.s.add(pw, base64.StdEncoding.EncodeToString([]byte(u+":"+pw)))
	}
	f.s.add(f.upPassword, base64.StdEncoding.EncodeToString([]byte(f.upUser+":"+f.upPassword)))
	f.htpasswd = filepath.Join(dir, "htpasswd")
	f.config = filepath.Join(dir, "regcache.yaml")
	os.WriteFile(f.htpasswd, []byte(ht.String()), 0o600)
	os.WriteFile(f.config, []byte("access:\n  users:\n    alice: [team/*]\n    bob: [other/*]\n"), 0o600)
	// What the upstream holds, read with the upstream's credentials.
	opts := []remote.Option{remote.WithAuth(&authn.Basic{Username: f.upUser, Password: f.upPassword}), remote.WithContext(t.Context())}
	for _, img := range []testenv.Image{f.pub, f.priv} {
		repo, err := name.NewRepository(upHost+"/"+img.Repo, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(repo.Digest(string(img.Digest)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		layer, err := remote.Layer(repo.Digest(string(img.Layers[0].Digest)), opts...)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		paths := f.paths(img)
		f.want[paths[0].path], f.want[paths[1].path], f.want[paths[2].path] = blob, desc.Manifest, desc.Manifest
	}
}

type reqPath struct{ kind, path string }

// paths are the requests of one image in an order that keeps each one cold
// on a fresh mirror (prefetch off): the blob, the manifest by digest, then
// by tag.
func (f *fixture) paths(img testenv.Image) []reqPath {
	return []reqPath{
		{"blob", "/v2/" + img.Repo + "/blobs/" + string(img.Layers[0].Digest)},
		{"manifest by digest", "/v2/" + img.Repo + "/manifests/" + string(img.Digest)},
		{"manifest by tag", "/v2/" + img.Repo + "/manifests/" + img.Tag},
	}
}

func (f *fixture) env(policy, data string) map[string]string {
	env := map[string]string{
		"REGCACHE_UPSTREAM_URL": f.upURL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": f.upUser, "REGCACHE_PASSWORD": f.upPassword,
		"REGCACHE_ALLOW": "127.0.0.1/32", "REGCACHE_HTPASSWD": f.htpasswd, "REGCACHE_CONFIG": f.config,
		"REGCACHE_PRIVATE": policy, "REGCACHE_PREFETCH": "false",
	}
	if data != "" {
		env["REGCACHE_DATA"] = data
	}
	return env
}

// client is one kind of client of the matrix.
type client struct {
	name string
	http *http.Client
	auth func(m *apptest.Mirror) string // Authorization header value
}

func sourceClient(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil}, Timeout: 30 * time.Second}
}

// token logs in at the mirror's /token and returns the token.
func (f *fixture) token(t *testing.T, m *apptest.Mirror, user string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", m.URL+"/token?service=regcache&scope=repository:team/single:pull", nil)
	req.SetBasicAuth(user, f.users[user])
	resp, err := sourceClient("127.0.0.1").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil || body.Token == "" {
		t.Fatalf("login %s: %s", user, resp.Status)
	}
	f.s.add(body.Token)
	return body.Token
}

func (f *fixture) clients(t *testing.T) []client {
	local := sourceClient("127.0.0.1")
	return []client{
		{name: "outside", http: sourceClient("127.0.0.2"), auth: func(*apptest.Mirror) string {
			return "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+f.users["alice"]))
		}},
		{name: "anonymous", http: local, auth: func(*apptest.Mirror) string { return "" }},
		{name: "alice", http: local, auth: func(*apptest.Mirror) string { // allowed team/* (Basic, directly)
			return "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+f.users["alice"]))
		}},
		{name: "bob", http: local, auth: func(m *apptest.Mirror) string { // allowed other/* (token flow)
			return "Bearer " + f.token(t, m, "bob")
		}},
	}
}

// expect is the status a client gets for the public and private repository.
func expect(policy, clientName string) (pub, priv int) {
	switch {
	case clientName == "outside":
		return 403, 403
	case policy == "allow":
		return 200, 200
	case policy == "authenticated" && clientName == "alice":
		return 200, 200
	case policy == "authenticated" && clientName == "anonymous":
		return 200, 401
	default:
		return 200, 403
	}
}

// get fetches path from m and returns the status and body.
func get(t *testing.T, c *http.Client, m *apptest.Mirror, path, authz string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", m.URL+path, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body, resp.Header
}

// check runs one client's requests against m and checks statuses, content,
// and that nothing private leaks to a client not allowed it.
func (f *fixture) check(t *testing.T, m *apptest.Mirror, policy string, c client, phase string) {
	t.Helper()
	wantPub, wantPriv := expect(policy, c.name)
	authz := c.auth(m)
	for _, repo := range []struct {
		img  testenv.Image
		want int
	}{{f.pub, wantPub}, {f.priv, wantPriv}} {
		for _, p := range f.paths(repo.img) {
			status, body, h := get(t, c.http, m, p.path, authz)
			if status != repo.want {
				t.Errorf("%s %s %s %s: %d %.200q, want %d", policy, phase, c.name, p.path, status, body, repo.want)
			}
			if status == 200 && !bytes.Equal(body, f.want[p.path]) {
				t.Errorf("%s %s %s %s: wrong content", policy, phase, c.name, p.path)
			}
			if status == 401 && !strings.Contains(h.Get("WWW-Authenticate"), `scope="repository:`+repo.img.Repo+`:pull"`) {
				t.Errorf("%s %s %s: 401 without a challenge: %q", c.name, p.path, phase, h.Get("WWW-Authenticate"))
			}
			if status != 200 {
				f.noPrivate(t, body, c.name+" "+p.path)
			}
		}
	}
	// The cross-repository probe: the private layer's digest under the
	// public repository's name.
	probe := "/v2/" + f.pub.Repo + "/blobs/" + string(f.priv.Layers[0].Digest)
	status, body, _ := get(t, c.http, m, probe, authz)
	if want := map[bool]int{true: 403, false: 404}[c.name == "outside"]; status != want {
		t.Errorf("%s %s %s cross-repository probe: %d, want %d", policy, phase, c.name, status, want)
	}
	f.noPrivate(t, body, c.name+" probe")
}

func (f *fixture) noPrivate(t *testing.T, body []byte, what string) {
	t.Helper()
	for _, p := range f.paths(f.priv) {
		if b := f.want[p.path]; len(body) > 0 && bytes.Contains(body, b[:min(len(b), 64)]) {
			t.Errorf("%s: private content in a refusal", what)
		}
	}
}

// TestAccessMatrix runs every client against a public and a private
// upstream repository, cold and warm, for manifests by tag and by digest
// and blobs, once per access.private policy, then scans the logs.
func TestAccessMatrix(t *testing.T) {
	f := newDistributionFixture(t)
	defer f.s.scan(t)
	warm := t.TempDir()
	t.Run("warm-up", func(t *testing.T) {
		m := f.s.mirror(apptest.Start(t, f.env("allow", warm)))
		c := sourceClient("127.0.0.1")
		for _, img := range []testenv.Image{f.pub, f.priv} {
			for _, p := range f.paths(img) {
				if status, _, _ := get(t, c, m, p.path, ""); status != 200 {
					t.Fatalf("warm-up %s: %d", p.path, status)
				}
			}
		}
	})
	for _, policy := range []string{"deny", "authenticated", "allow"} {
		t.Run(policy, func(t *testing.T) {
			for _, c := range f.clients(t) {
				t.Run("cold/"+c.name, func(t *testing.T) {
					m := f.s.mirror(apptest.Start(t, f.env(policy, "")))
					f.check(t, m, policy, c, "cold")
				})
			}
			t.Run("warm", func(t *testing.T) {
				m := f.s.mirror(apptest.Start(t, f.env(policy, warm)))
				for _, c := range f.clients(t) {
					f.check(t, m, policy, c, "warm")
				}
				// Again, now that the manifests a client may see are in
				// the mirror's memory: memory answers no one the policy
				// refuses.
				for _, c := range f.clients(t) {
					f.check(t, m, policy, c, "warm, in memory")
				}
				if strings.Contains(m.Log(), `"cache":"miss"`) {
					t.Error("warm: content was fetched from upstream")
				}
			})
		})
	}
}

// TestAllowListSource refuses a client whose source address is outside the
// allow-list, believes X-Forwarded-For only from a trusted proxy, and
// refuses a trusted proxy's client that is outside the list.
func TestAllowListSource(t *testing.T) {
	hub := testenv.NewHub(t)
	img := hub.Seed(t, testenv.WithPrefix("pub/")).Single
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ALLOW": "127.0.0.1/32", "REGCACHE_TRUSTED_PROXIES": "127.0.0.3/32"})
	path := "/v2/" + img.Repo + "/manifests/" + img.Tag
	for _, tt := range []struct {
		name, source, xff string
		want              int
	}{
		{"allowed", "127.0.0.1", "", 200},
		{"outside", "127.0.0.2", "", 403},
		{"xff from an untrusted peer", "127.0.0.2", "127.0.0.1", 403},
		{"trusted proxy for an allowed client", "127.0.0.3", "127.0.0.1", 200},
		{"trusted proxy for an outside client", "127.0.0.3", "127.0.0.2", 403},
		{"trusted proxy itself", "127.0.0.3", "", 403},
	} {
		req, _ := http.NewRequest("GET", m.URL+path, nil)
		if tt.xff != "" {
			req.Header.Set("X-Forwarded-For", tt.xff)
		}
		resp, err := sourceClient(tt.source).Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
		if tt.want == 403 && (!bytes.Contains(body, []byte(`"DENIED"`)) || resp.Header.Get("Docker-Content-Digest") != "") {
			t.Errorf("%s: refusal carries more than DENIED: %s", tt.name, body)
		}
	}
	// URL length limit.
	long := m.URL + "/v2/" + strings.Repeat("a/", 5000) + "manifests/latest"
	resp, err := sourceClient("127.0.0.1").Get(long)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestURITooLong {
		t.Errorf("10 KB URL: %d, want 414", resp.StatusCode)
	}
}

// TestClientLogins logs in with skopeo (--creds) and a real dockerd
// (docker login, then a pull of a private image), and checks that wrong
// passwords are refused.
func TestClientLogins(t *testing.T) {
	f := newHubFixture(t)
	defer f.s.scan(t)
	m := f.s.mirror(apptest.Start(t, f.env("authenticated", "")))
	ref := m.Host + "/" + f.priv.Repo + ":" + f.priv.Tag
	t.Run("skopeo", func(t *testing.T) {
		skopeo := testenv.RequireTool(t, "skopeo")
		run := func(args ...string) (string, error) {
			policy := filepath.Join(t.TempDir(), "policy.json")
			os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
			cmd := exec.CommandContext(t.Context(), skopeo, append([]string{"--policy", policy}, args...)...)
			cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=", "REGISTRY_AUTH_FILE="+filepath.Join(t.TempDir(), "auth.json"))
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		dir := filepath.Join(t.TempDir(), "img")
		if out, err := run("copy", "--src-tls-verify=false", "--src-creds", "alice:"+f.users["alice"], "docker://"+ref, "dir:"+dir); err != nil {
			t.Fatalf("skopeo copy as alice: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(string(f.priv.Layers[0].Digest), "sha256:"))); err != nil {
			t.Errorf("the private layer did not arrive: %v", err)
		}
		for _, creds := range []string{"alice:wrong", "bob:" + f.users["bob"], "mallory:" + f.users["alice"]} {
			if out, err := run("inspect", "--raw", "--tls-verify=false", "--creds", creds, "docker://"+ref); err == nil {
				t.Errorf("skopeo as %s read the private image: %s", strings.Split(creds, ":")[0], out)
			}
		}
		if out, err := run("inspect", "--raw", "--tls-verify=false", "--no-creds", "docker://"+ref); err == nil {
			t.Errorf("skopeo anonymously read the private image: %s", out)
		}
	})
	t.Run("docker", func(t *testing.T) {
		testenv.RequireTool(t, "docker")
		d := testenv.StartDockerd(t, testenv.DockerdOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if out, err := d.Docker(ctx, "login", "-u", "alice", "-p", "wrong", m.Host); err == nil {
			t.Errorf("docker login with a wrong password succeeded: %s", out)
		}
		if out, err := d.Docker(ctx, "pull", ref); err == nil {
			t.Errorf("anonymous docker pull of the private image succeeded: %s", out)
		}
		if out, err := d.Docker(ctx, "login", "-u", "alice", "-p", f.users["alice"], m.Host); err != nil {
			t.Fatalf("docker login: %v\n%s\n%s", err, out, d.Log())
		}
		if out, err := d.Docker(ctx, "pull", ref); err != nil {
			t.Fatalf("docker pull after login: %v\n%s\n%s", err, out, d.Log())
		}
		out, err := d.Docker(ctx, "image", "inspect", "--format", "{{index .RepoDigests 0}}", ref)
		if err != nil || !strings.Contains(out, string(f.priv.Digest)) {
			t.Errorf("pulled image digest %q (%v), want %s", out, err, f.priv.Digest)
		}
		if out, err := d.Docker(ctx, "login", "-u", "bob", "-p", f.users["bob"], m.Host); err != nil {
			t.Fatalf("docker login bob: %v\n%s", err, out)
		}
		d.Docker(ctx, "rmi", ref)
		if out, err := d.Docker(ctx, "pull", ref); err == nil {
			t.Errorf("bob pulled alice's private image: %s", out)
		}
	})
}

// testCA is a certificate authority for TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// leaf writes a server certificate for 127.0.0.1 and localhost to
// certFile/keyFile, through temporary files renamed into place, the key
// last.
func (ca *testCA) leaf(t *testing.T, serial int64, certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "regcache test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(certFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile+".tmp", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	os.Rename(certFile+".tmp", certFile)
	os.Rename(keyFile+".tmp", keyFile)
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// TestTLS serves the API over TLS from a test CA's certificate: crane and
// skopeo verify it, HTTP/2 is offered, and replacing the files switches the
// certificate without a restart.
func TestTLS(t *testing.T) {
	hub := testenv.NewHub(t)
	img := hub.Seed(t, testenv.WithPrefix("pub/")).Single
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	ca1, ca2 := newCA(t, "regcache test CA 1"), newCA(t, "regcache test CA 2")
	ca1.leaf(t, 100, certFile, keyFile)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_TLS_CERT": certFile, "REGCACHE_TLS_KEY": keyFile})
	ref := m.Host + "/" + img.Repo + ":" + img.Tag

	crane := func(ca *testCA) error {
		r, err := name.ParseReference(ref)
		if err != nil {
			return err
		}
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.pool()}, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		desc, err := remote.Get(r, remote.WithTransport(tr), remote.WithContext(t.Context()))
		if err != nil {
			return err
		}
		im, err := desc.Image()
		if err != nil {
			return err
		}
		return validate.Image(im)
	}
	if err := crane(ca1); err != nil {
		t.Fatalf("crane with the CA: %v", err)
	}
	if err := crane(ca2); err == nil {
		t.Error("crane accepted a certificate from another CA")
	}

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca1.pool()}, ForceAttemptHTTP2: true}
	resp, err := (&http.Client{Transport: tr}).Get("https://" + m.Host + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tr.CloseIdleConnections()
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2", resp.Proto)
	}

	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		certDir := t.TempDir()
		os.WriteFile(filepath.Join(certDir, "ca.crt"), ca1.pem, 0o644)
		policy := filepath.Join(t.TempDir(), "policy.json")
		os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
		run := func(args ...string) ([]byte, error) {
			cmd := exec.CommandContext(t.Context(), skopeo, append([]string{"--policy", policy}, args...)...)
			cmd.Env = append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "NO_PROXY=")
			return cmd.CombinedOutput()
		}
		if out, err := run("copy", "--src-cert-dir", certDir, "--src-no-creds", "docker://"+ref, "dir:"+filepath.Join(t.TempDir(), "img")); err != nil {
			t.Errorf("skopeo with the CA: %v\n%s", err, out)
		}
		if out, err := run("inspect", "--raw", "--no-creds", "docker://"+ref); err == nil {
			t.Errorf("skopeo without the CA succeeded: %s", out)
		}
	}

	// Rotation: a certificate from another CA, picked up by new connections.
	ca2.leaf(t, 200, certFile, keyFile)
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := tls.Dial("tcp", m.Host, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		conn.Close()
		if serial == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("certificate not replaced within 10s (serial %d)", serial)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := crane(ca2); err != nil {
		t.Errorf("crane with the new CA after rotation: %v", err)
	}
}
