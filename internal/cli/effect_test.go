package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/regcache/regcache/internal/cluster"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
)

// TestEveryOptionTakesEffect starts the real program with a value other
// than its default for every option a SIGHUP or the command line can set
// (config is the file itself) and finds each value in effect: in what the
// running parts report at /status (read from the part, not from the
// configuration), or in what the mirror does (TLS on addr, S3 objects under
// the prefix, a presigned redirect, the cluster member in Redis, logs at
// debug in text, a private image served with the upstream credentials).
// An option added to the table without a check here fails the test: that
// is how a parsed but ignored setting (the scrub's) is caught.
func TestEveryOptionTakesEffect(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(1<<20))
	hub.SetCredentials("effect-user", "effect-pass")
	private := *imgs.Big
	hub.SetPrivate(private.Repo, true)
	s3srv, rs := testenv.NewS3(t), testenv.NewRedis(t)
	dir := t.TempDir()
	certPath, keyPath, htpasswd := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "htpasswd")
	writeCert(t, certPath, keyPath, "effect")
	writeHtpasswd(t, htpasswd, "alice", "alice-password")
	pwFile := filepath.Join(dir, "hub-password")
	if err := os.WriteFile(pwFile, []byte("effect-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodesFile := filepath.Join(dir, "nodes.txt")
	if err := os.WriteFile(nodesFile, []byte("192.0.2.7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An audit-mode policy denying everything: every pull is served and
	// reported as would_deny.
	policyPath := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyPath, []byte("mode: audit\nrules:\n  - {match: 'docker.io/**', deny: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "regcache.yaml")
	yaml := "access:\n  users: {alice: [team/*]}\n" +
		"upstreams:\n  - {name: docker.io, url: 'https://registry-1.docker.io', fallback: [mirror.gcr.io], fill_connections: 3}\n" +
		"  - {name: mirror.gcr.io, url: 'http://127.0.0.1:9', trusted_tags: true}\n"
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	data := filepath.Join(dir, "data-elsewhere")
	const adminToken, clusterSecret = "effect-admin-token-0123456789abcdef", "effect-cluster-secret-0123456789abcdef"
	env := map[string]string{
		"config": cfgPath, "addr": addr, "admin-addr": adminAddr, "admin-token": adminToken, "data": data,
		"freshness": "7m", "negative-ttl": "45s", "fill-timeout": "13m", "shutdown-timeout": "11s", "probe-interval": "17s",
		"prefetch": "false", "prefetch-parallel": "5", "budget-reserve": "7",
		// sealed is set to its default here (sealing would stop the pulls
		// this test makes); TestSealedOptionTakesEffect seals.
		"sealed": "false", "sealed-miss-status": "503",
		"upstream-url": hub.URL, "upstream-name": "docker.io", "username": "effect-user", "password-file": pwFile,
		"max-size": "3GiB", "max-blob-size": "2GiB", "max-age": "48h", "scrub-interval": "5h", "scrub-rate": "3MiB",
		"local-cache-size": "64KiB",
		"s3-endpoint":      s3srv.Endpoint, "s3-bucket": s3srv.Bucket, "s3-region": s3srv.Region, "s3-prefix": "rc-effect/",
		"s3-access-key": s3srv.AccessKey, "s3-secret-key": s3srv.SecretKey, "s3-path-style": "true", "s3-redirect": "true",
		"cluster-redis": rs.URL, "cluster-advertise": "https://" + addr, "cluster-secret": clusterSecret,
		"allow": "127.0.0.1/32,10.1.0.0/16", "trusted-proxies": "127.0.0.1/32", "htpasswd": htpasswd, "private": "allow",
		"tls-cert": certPath, "tls-key": keyPath, "log-level": "debug", "log-format": "text",
		"fleet-expected": "10.9.0.0/16," + nodesFile,
		"policy-file":    policyPath,
	}
	// "password" and "password-file" are one setting given two ways: the
	// first is checked by TestPasswordOptionTakesEffect.
	checked := map[string]bool{"password": true}
	check := func(flags ...string) {
		for _, f := range flags {
			checked[f] = true
		}
	}
	defer func() {
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		config.RegisterFlags(fs)
		fs.VisitAll(func(f *pflag.Flag) {
			if _, ok := env[f.Name]; !ok && f.Name != "password" {
				t.Errorf("--%s is not set to a value of its own here", f.Name)
			}
			if !checked[f.Name] && !t.Failed() {
				t.Errorf("--%s: no check that it takes effect", f.Name)
			}
		})
	}()

	logPath := filepath.Join(dir, "regcache.log")
	var vars []string
	for flag, v := range env {
		vars = append(vars, "REGCACHE_"+strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))+"="+v)
	}
	stop := startServe(t, append(vars, "HTTPS_PROXY=http://127.0.0.1:9"), logPath, "https://"+addr+"/v2/")
	defer stop()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, url string, hdr map[string]string, body []byte) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}

	// TLS on addr; the admin listener on admin_addr.
	if resp, _ := do("GET", "https://"+addr+"/v2/", nil, nil); resp.TLS == nil {
		t.Error("addr does not speak TLS")
	}
	check("addr", "tls-cert", "tls-key")
	var st struct {
		Settings  map[string]string `json:"settings"`
		Upstreams []struct {
			Name     string          `json:"name"`
			URL      string          `json:"url"`
			Fallback json.RawMessage `json:"fallback"`
		} `json:"upstreams"`
	}
	readStatus := func() {
		resp, b := do("GET", "http://"+adminAddr+"/status", map[string]string{"Authorization": "Bearer " + adminToken}, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("/status on admin_addr: %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
	}
	readStatus()
	check("admin-addr")
	for deadline := time.Now().Add(10 * time.Second); st.Settings["probe_interval"] != "17s" && time.Now().Before(deadline); readStatus() {
		time.Sleep(50 * time.Millisecond)
	}

	// What the running parts hold.
	for flag, want := range map[string]string{
		"freshness": "7m0s", "negative-ttl": "45s", "fill-timeout": "13m0s", "shutdown-timeout": "11s", "probe-interval": "17s",
		"prefetch": "false", "prefetch-parallel": "5", "budget-reserve": "7", "sealed": "false", "sealed-miss-status": "503",
		"max-size": "3221225472", "max-blob-size": "2147483648", "max-age": "48h0m0s",
		"scrub-interval": "5h0m0s", "scrub-rate": "3145728", "local-cache-size": "65536",
		"allow": "127.0.0.1/32,10.1.0.0/16", "trusted-proxies": "127.0.0.1/32", "htpasswd": htpasswd, "private": "allow",
		"cluster-advertise": "https://" + addr, "tls-cert": certPath,
		"fleet-expected": "10.9.0.0/16,192.0.2.7/32", // the file read into the fleet table
	} {
		key := flagKey(t, flag)
		if got := st.Settings[key]; got != want {
			t.Errorf("--%s: %s in effect is %q, want %q", flag, key, got, want)
		}
		check(flag)
	}
	if got := st.Settings["access.users"]; got != "1 users with patterns" {
		t.Errorf("access.users in effect: %q", got)
	}
	if got := st.Settings["upstreams[0].fill_connections"]; got != "3" {
		t.Errorf("upstreams[0].fill_connections in effect: %q, want 3", got)
	}
	if len(st.Upstreams) != 2 || st.Upstreams[0].URL != hub.URL || st.Upstreams[0].Name != "docker.io" || len(st.Upstreams[0].Fallback) == 0 {
		t.Errorf("upstreams in effect: %+v", st.Upstreams)
	}
	check("upstream-url", "upstream-name")

	// The allow-list, with the proxy trusted: a client behind it outside the list is refused.
	if resp, _ := do("GET", "https://"+addr+"/v2/", map[string]string{"X-Forwarded-For": "10.9.9.9"}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a client outside access.allow behind a trusted proxy: %d, want 403", resp.StatusCode)
	}
	if resp, _ := do("GET", "https://"+addr+"/v2/", map[string]string{"X-Forwarded-For": "10.1.2.3"}, nil); resp.StatusCode == http.StatusForbidden {
		t.Error("a client inside access.allow behind a trusted proxy was refused")
	}
	// A login against the htpasswd file.
	loginStatus := func(pw string) int {
		req, _ := http.NewRequest("GET", "https://"+addr+"/v2/", nil)
		req.SetBasicAuth("alice", pw)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if good, bad := loginStatus("alice-password"), loginStatus("wrong"); good != 200 || bad != http.StatusUnauthorized {
		t.Errorf("logins against access.htpasswd: right password %d, wrong %d", good, bad)
	}

	// A private image, anonymously (access.private allow), fetched with
	// the upstream credentials (username, password_file).
	accept := map[string]string{"Accept": "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"}
	if resp, b := do("GET", "https://"+addr+"/v2/"+private.Repo+"/manifests/"+private.Tag, accept, nil); resp.StatusCode != 200 {
		t.Fatalf("the private image's manifest: %d %s", resp.StatusCode, b)
	}
	check("username", "password-file")
	var pst struct {
		Settings map[string]string `json:"settings"`
		Policy   struct {
			Denials []struct{ Repository, Decision, Rule string } `json:"denials"`
		} `json:"policy"`
	}
	if resp, b := do("GET", "http://"+adminAddr+"/status", map[string]string{"Authorization": "Bearer " + adminToken}, nil); resp.StatusCode != 200 || json.Unmarshal(b, &pst) != nil {
		t.Fatalf("/status: %d %s", resp.StatusCode, b)
	}
	if d := pst.Policy.Denials; pst.Settings["policy_file"] != policyPath || pst.Settings["policy"] != "audit, 1 rules" ||
		len(d) != 1 || d[0].Repository != private.Repo || d[0].Decision != "would_deny" || d[0].Rule != "policy.rules[0] docker.io/**" {
		t.Errorf("policy_file in effect: settings %q, %q; denials %+v", pst.Settings["policy_file"], pst.Settings["policy"], d)
	}
	check("policy-file")
	layer := private.Layers[0]
	blobURL := "https://" + addr + "/v2/" + private.Repo + "/blobs/" + layer.Digest.String()
	if resp, b := do("GET", blobURL, nil, nil); resp.StatusCode != 200 || int64(len(b)) != layer.Size {
		t.Fatalf("the private image's layer: %d, %d bytes", resp.StatusCode, len(b))
	}
	// Stored in the bucket under the prefix (endpoint, bucket, region,
	// keys and path style all had to be right), then a hit redirects to it.
	mc := s3srv.Client(t)
	var objects []string
	for deadline := time.Now().Add(10 * time.Second); len(objects) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		objects = nil
		for o := range mc.ListObjects(t.Context(), s3srv.Bucket, minio.ListObjectsOptions{Prefix: "rc-effect/blobs/", Recursive: true}) {
			objects = append(objects, o.Key)
		}
	}
	if !slices.ContainsFunc(objects, func(k string) bool { return strings.HasSuffix(k, layer.Digest.Encoded()) }) {
		t.Errorf("the layer is not in the bucket under rc-effect/: %v", objects)
	}
	check("s3-endpoint", "s3-bucket", "s3-region", "s3-prefix", "s3-access-key", "s3-secret-key", "s3-path-style")
	if resp, _ := do("GET", blobURL, nil, nil); resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), s3srv.Endpoint) {
		t.Errorf("a hit with storage.s3.redirect: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	check("s3-redirect")

	// The replica is a member in Redis under its advertised URL, and its
	// internal endpoint takes the secret.
	ropts, _ := redis.ParseURL(rs.URL)
	rdb := redis.NewClient(ropts)
	defer rdb.Close()
	if members, err := rdb.ZRange(t.Context(), "regcache:cluster:members", 0, -1).Result(); err != nil || !slices.Contains(members, "https://"+addr) {
		t.Errorf("cluster members in Redis: %v %v", members, err)
	}
	peer := fmt.Sprintf("https://%s/_regcache/cluster/v1/blobs/%s?upstream=docker.io&repo=%s&size=%d&offset=0", addr, layer.Digest, private.Repo, layer.Size)
	peerURI := strings.TrimPrefix(peer, "https://"+addr)
	sign := func(secret string) map[string]string {
		return map[string]string{cluster.PeerAuthHeader: cluster.PeerSignature(secret, "GET", peerURI, time.Now())}
	}
	if resp, _ := do("GET", peer, sign("wrong-"+clusterSecret), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the internal endpoint signed with a wrong secret: %d", resp.StatusCode)
	}
	if resp, _ := do("GET", peer, sign(clusterSecret), nil); resp.StatusCode == http.StatusUnauthorized {
		t.Error("the internal endpoint refused a request signed with cluster.secret")
	}
	check("cluster-redis", "cluster-secret")

	// The admin token guards state-changing calls, even from loopback.
	prune := []byte(`{"toSize": 1099511627776}`)
	if resp, _ := do("POST", "http://"+adminAddr+"/cache/prune", map[string]string{"Content-Type": "application/json"}, prune); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a prune without admin_token: %d, want 403", resp.StatusCode)
	}
	if resp, b := do("POST", "http://"+adminAddr+"/cache/prune", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + adminToken}, prune); resp.StatusCode != 200 {
		t.Errorf("a prune with admin_token: %d %s", resp.StatusCode, b)
	}
	check("admin-token")
	if _, err := os.Stat(filepath.Join(data, "s3")); err != nil {
		t.Errorf("the data directory holds no spool: %v", err)
	}
	check("data")
	b, _ := os.ReadFile(logPath)
	if !strings.Contains(string(b), "level=DEBUG") {
		t.Error("the log has no debug line in text format")
	}
	check("log-level", "log-format")
	check("config") // the file above gave access.users and the fallback chain
}

// TestPasswordOptionTakesEffect: --password (as REGCACHE_PASSWORD) reaches
// the upstream client: a private image is fetched with it.
func TestPasswordOptionTakesEffect(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.SetCredentials("pw-user", "pw-secret")
	hub.SetPrivate(imgs.Single.Repo, true)
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	stop := startServe(t, []string{"REGCACHE_ADDR=" + addr, "REGCACHE_DATA=" + filepath.Join(dir, "data"), "REGCACHE_ADMIN_ADDR=",
		"REGCACHE_UPSTREAM_URL=" + hub.URL, "REGCACHE_UPSTREAM_NAME=docker.io", "REGCACHE_USERNAME=pw-user",
		"REGCACHE_PASSWORD=pw-secret", "REGCACHE_PRIVATE=allow", "HTTPS_PROXY=http://127.0.0.1:9"},
		filepath.Join(dir, "regcache.log"), "http://"+addr+"/v2/")
	defer stop()
	req, _ := http.NewRequest("GET", "http://"+addr+"/v2/"+imgs.Single.Repo+"/manifests/"+imgs.Single.Tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("a private image with --password: %d", resp.StatusCode)
	}
}

// flagKey is the YAML key of a flag.
func flagKey(t *testing.T, flag string) string {
	t.Helper()
	for _, s := range mustExplain(t) {
		if s.Flag == "--"+flag {
			return s.Key
		}
	}
	t.Fatalf("no option --%s", flag)
	return ""
}

func mustExplain(t *testing.T) []config.Setting {
	t.Helper()
	s, _, err := config.Explain(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServe runs `regcache serve` (this test binary as the program) with
// env, logging to logPath, until ready answers; stop ends it by SIGTERM.
func startServe(t *testing.T, env []string, logPath, ready string) (stop func()) {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "REGCACHETEST_CHILD=serve")...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 32<<10 {
				b = b[len(b)-32<<10:]
			}
			t.Logf("regcache log:\n%s", b)
		}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 2 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", ready, nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			return stop
		}
		select {
		case <-done:
			stop()
			t.Fatal("regcache serve exited at start")
		case <-ctx.Done():
			stop()
			t.Fatal("regcache serve did not answer in 30 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}
