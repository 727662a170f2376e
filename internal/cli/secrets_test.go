package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
)

// TestSecretsNeverShown sets every secret option (config.SecretKeys: the
// admin token, each upstream's password, storage.s3.secret_key,
// cluster.secret and the password inside cluster.redis) to a value of its
// own, runs a real mirror on Redis and S3 with them, and scans every
// output for those values: `config print` (text and --json), the
// start-up, reload and stop log at debug level, and /status with and
// without the admin token.
func TestSecretsNeverShown(t *testing.T) {
	redis := testenv.NewRedis(t)
	s3 := testenv.NewS3(t)
	hub := testenv.NewHub(t)
	const (
		adminToken    = "admintoken-MARKER-5b1e0c77"
		clusterSecret = "clustersecret-MARKER-9d2f41"
		upPassword    = "uppassword-MARKER-71ac3e"
		up2Password   = "up2password-MARKER-c0ffee"
	)
	hub.SetCredentials("me", upPassword)
	secrets := map[string]string{
		"admin_token": adminToken, "cluster.secret": clusterSecret, "upstreams[].password": upPassword,
		"storage.s3.secret_key": s3.SecretKey, "cluster.redis": redis.Password,
	}
	for _, key := range config.SecretKeys() {
		if _, ok := secrets[key]; !ok {
			t.Errorf("secret option %s is not set by this test: add it", key)
		}
	}
	dir := t.TempDir()
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	port := testenv.FreePort(t)
	yaml := fmt.Sprintf(`admin_addr: %q
admin_token: %s
data: %s
log: {level: debug}
upstreams:
  - name: docker.io
    url: %s
    username: me
    password: %s
  - name: other.example
    url: http://127.0.0.1:9
    username: you
    password: %s
storage:
  s3: {endpoint: %q, bucket: %s, region: %s, access_key: %s, secret_key: %s, path_style: true}
cluster:
  redis: %q
  advertise: "http://127.0.0.1:%d"
  secret: %s
`, adminAddr, adminToken, filepath.Join(dir, "data"), hub.URL, upPassword, up2Password,
		s3.Endpoint, s3.Bucket, s3.Region, s3.AccessKey, s3.SecretKey, redis.URL, port, clusterSecret)
	cfg := filepath.Join(dir, "regcache.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	scan := func(what, out string) {
		t.Helper()
		for key, v := range secrets {
			if strings.Contains(out, v) {
				t.Errorf("%s shows %s's value", what, key)
			}
		}
		if strings.Contains(out, up2Password) {
			t.Errorf("%s shows upstreams[1].password's value", what)
		}
	}
	for _, args := range [][]string{{"config", "print", "--config", cfg}, {"config", "print", "--json", "--config", cfg}} {
		out, err := runCLI(t, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if !strings.Contains(strings.ReplaceAll(strings.ReplaceAll(out, `\u003c`, "<"), `\u003e`, ">"), "<redacted>") || !strings.Contains(out, redis.Addr) {
			t.Errorf("%v: the secrets are not shown as <redacted> (or the Redis host is hidden too):\n%s", args, out)
		}
		scan(strings.Join(args[:len(args)-2], " "), out)
	}

	logPath := filepath.Join(dir, "serve.log")
	c := startChild(t, []string{"REGCACHE_CONFIG=" + cfg}, logPath)
	img := hub.Seed(t).Single
	if resp, err := http.Get("http://" + c.addr + "/v2/" + img.Repo + "/manifests/" + img.Tag); err != nil || resp.StatusCode != 200 {
		t.Fatalf("pull through the mirror: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, tok := range []string{"", adminToken} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+adminAddr+"/status", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/status: %d %s", resp.StatusCode, b)
		}
		scan(fmt.Sprintf("/status (token %v)", tok != ""), string(b))
	}
	c.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	c.stop(t)
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), "SIGHUP") {
		t.Errorf("no reload in the log:\n%s", log)
	}
	scan("the serve log", string(log))
}
