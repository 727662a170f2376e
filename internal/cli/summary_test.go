package cli

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
)

// TestStartupSummary: the real program prints where it listens, the
// dashboard, the data directory, each upstream with its auth mode, the
// access mode, the cap and the next step, and logs the same as one line.
// It listens on loopback (tests never listen on every interface), so it
// gives no open-mirror warning; TestOpenWarning covers that.
func TestStartupSummary(t *testing.T) {
	hub := testenv.NewHub(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "hub-token")
	os.WriteFile(pwFile, []byte("secret-token\n"), 0o600)
	admin := testenv.FreePort(t)
	logPath := filepath.Join(dir, "open.log")
	c := startChild(t, []string{"REGCACHE_DATA=" + filepath.Join(dir, "data"), "REGCACHE_UPSTREAM_URL=" + hub.URL,
		"REGCACHE_USERNAME=me", "REGCACHE_PASSWORD_FILE=" + pwFile, "REGCACHE_MAX_SIZE=10GiB",
		"REGCACHE_ADMIN_ADDR=127.0.0.1:" + itoa(admin)}, logPath)
	c.stop(t)
	b, _ := os.ReadFile(logPath)
	out := string(b)
	for _, want := range []string{
		"regcache dev is serving", "registry API  http://127.0.0.1:",
		"dashboard     http://127.0.0.1:" + itoa(admin) + "/",
		"data          " + filepath.Join(dir, "data"),
		"upstream      " + hub.URL[len("http://"):], "(user me, password from " + pwFile + ")",
		"access        every client, private repositories: deny",
		"cache cap     10.0 GiB",
		"regcache client docker enable --mirror http://HOST:",
		`"msg":"regcache listening"`, `"admin_url":"http://127.0.0.1:` + itoa(admin) + `"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the start-up output has no %q", want)
		}
	}
	if strings.Contains(out, "secret-token") {
		t.Error("the start-up output shows the upstream password")
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}

	if strings.Contains(out, "WARNING") {
		t.Error("a mirror on loopback is warned about as open to every interface")
	}
}

// TestOpenWarning: the README's first command (":5000", no allow-list, no
// login) is warned about; one address, an allow-list or logins are not.
func TestOpenWarning(t *testing.T) {
	for _, tc := range []struct {
		addr, allow, htpasswd string
		open                  bool
	}{
		{":5000", "", "", true},
		{"0.0.0.0:5000", "", "", true},
		{"[::]:5000", "", "", true},
		{"127.0.0.1:5000", "", "", false},
		{":5000", "10.0.0.0/8", "", false},
		{":5000", "", "/etc/regcache/htpasswd", false},
	} {
		cfg := config.Config{Addr: tc.addr, AdminAddr: "127.0.0.1:5001", Data: "./data",
			Upstreams: []config.Upstream{{Name: "docker.io", URL: "https://registry-1.docker.io"}},
			Access:    config.Access{Private: "deny", Htpasswd: tc.htpasswd}}
		if tc.allow != "" {
			cfg.Access.Allow = []netip.Prefix{netip.MustParsePrefix(tc.allow)}
		}
		s := newStartup(cfg, tc.addr)
		var b bytes.Buffer
		s.write(&b)
		if s.Open != tc.open || strings.Contains(b.String(), "WARNING") != tc.open {
			t.Errorf("%+v: open %v, summary:\n%s", tc, s.Open, b.String())
		}
	}
}

// TestStartupDefaultCap: with no storage.max_size, serve applies the
// default cap (80 % of the data disk, at most 80 % of what the cache can
// use) and says so in the summary and the log.
func TestStartupDefaultCap(t *testing.T) {
	hub := testenv.NewHub(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "serve.log")
	c := startChild(t, []string{"REGCACHE_DATA=" + filepath.Join(dir, "data"), "REGCACHE_UPSTREAM_URL=" + hub.URL,
		"REGCACHE_ADMIN_ADDR=", "REGCACHE_LOG_LEVEL=info"}, logPath)
	c.stop(t)
	b, _ := os.ReadFile(logPath)
	out := string(b)
	for _, want := range []string{"cache cap     ", "(80% of the ", `"msg":"cache cap applied"`, `"max_size_bytes":`} {
		if !strings.Contains(out, want) {
			t.Errorf("the start-up output has no %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "cache cap     none") {
		t.Errorf("no cap by default:\n%s", out)
	}
}

// TestProgName: the next steps name `go run ./cmd/regcache` when the
// program runs from the go-build cache, and regcache otherwise.
func TestProgName(t *testing.T) {
	t.Parallel()
	for exe, want := range map[string]string{
		"/tmp/go-build2788/b001/exe/regcache":   "go run ./cmd/regcache",
		"/root/.cache/go-build/4f/exe/regcache": "go run ./cmd/regcache",
		"/usr/local/bin/regcache":               "regcache",
		"/tmp/go-build123/b001/cli.test":        "regcache",
		"/home/me/go/bin/regcache":              "regcache",
	} {
		if got := progName(exe); got != want {
			t.Errorf("progName(%q) = %q, want %q", exe, got, want)
		}
	}
}
