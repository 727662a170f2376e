package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// runStatus runs the real command line `regcache status args...` (this
// test binary as the program, through Run as main does) and returns its
// exit code and output.
func runStatus(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "REGCACHETEST_CHILD=cli", "REGCACHETEST_ARGS="+strings.Join(append([]string{"status"}, args...), " "),
		"HTTPS_PROXY=http://127.0.0.1:9")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run regcache status: %v", err)
	}
	return code, out.String(), errb.String()
}

// waitStatus runs status until it exits with code (the probes run every
// few hundred milliseconds), and returns that run's output.
func waitStatus(t *testing.T, code int, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, out, errs := runStatus(t, args...)
		if got == code {
			return out + errs
		}
		if time.Now().After(deadline) {
			t.Fatalf("regcache status %v: exit %d, want %d\n%s%s", args, got, code, out, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStatusStates: `regcache status` against the real serve command, with
// both address forms and --json, in each state: healthy (0), the upstream
// unreachable and content served stale (1), a 429 holding manifest GETs
// back (1), the mirror gone (2).
func TestStatusStates(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	imgs := hub.Seed(t)
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	logPath := filepath.Join(t.TempDir(), "regcache.log")
	env := []string{"REGCACHE_DATA=" + t.TempDir(), "REGCACHE_UPSTREAM_URL=" + hub.URL, "REGCACHE_UPSTREAM_NAME=docker.io",
		"REGCACHE_ADMIN_ADDR=" + adminAddr, "REGCACHE_LOG_LEVEL=info", "REGCACHE_PROBE_INTERVAL=200ms", "REGCACHE_FRESHNESS=1ms",
		"REGCACHE_PREFETCH=false"}
	c := startChild(t, env, logPath)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("regcache log:\n%s", b)
		}
	}()
	img := imgs.Single
	for range 2 { // a miss, then hits
		if err := pullAll(t.Context(), c.addr, img); err != nil {
			t.Fatal(err)
		}
	}

	out := waitStatus(t, 0, "--admin", adminAddr)
	t.Logf("healthy:\n%s", out)
	for _, want := range []string{"mirror       healthy", "hit ratio", "pulls saved  1 ", "bytes        ", "docker.io", "up", "100/21600s", hub.URL, "next probe"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if code, out, errs := runStatus(t, "--admin", "http://"+adminAddr); code != 0 || !strings.Contains(out, "mirror       healthy") {
		t.Errorf("status --admin http://%s: exit %d\n%s%s", adminAddr, code, out, errs)
	}
	if code, out, errs := runStatus(t, "--admin", "http://"+adminAddr+"/", "--json"); code != 0 {
		t.Errorf("status --json: exit %d\n%s%s", code, out, errs)
	} else {
		var st admin.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json is not JSON: %v\n%s", err, out)
		}
		u := st.Upstreams[0]
		if st.State != "healthy" || st.Requests.PullsSaved != 1 || st.Requests.HitRatio <= 0 || u.State != "up" || u.RateLimit.Limit != 100 || u.NextProbe.IsZero() {
			t.Errorf("status --json: %+v", st)
		}
	}

	// The upstream goes away: the probe marks it, a pull is served stale.
	hub.Down()
	waitStatus(t, 1, "--admin", adminAddr) // the probe saw it
	if err := pullAll(t.Context(), c.addr, img); err != nil {
		t.Fatalf("pull with the upstream down: %v", err)
	}
	out = waitStatus(t, 1, "--admin", adminAddr)
	t.Logf("upstream down:\n%s", out)
	for _, want := range []string{"mirror       degraded", "stale-serving", "unreachable, serving from cache", "reason: ", "since ", "next probe", "degraded:\n- docker.io", "1 stale"} {
		if !strings.Contains(out, want) {
			t.Errorf("status with the upstream down lacks %q:\n%s", want, out)
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "docker.io: unreachable") {
		t.Errorf("/readyz with the upstream down: %d %s", resp.StatusCode, body)
	}

	// Back up: healthy again. Then the pull budget runs out.
	hub.Up()
	waitStatus(t, 0, "--admin", adminAddr)
	hub.SetRateLimit(100, 0)
	ml := imgs.ManifestList
	if resp, err := http.Get("http://" + c.addr + "/v2/" + ml.Repo + "/manifests/" + ml.Tag); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("uncached pull with no budget left: %d, want 429", resp.StatusCode)
	}
	out = waitStatus(t, 1, "--admin", adminAddr)
	for _, want := range []string{"rate-limited until", "0 (under reserve 10)", "manifest GET", "1 errors"} {
		if !strings.Contains(out, want) {
			t.Errorf("status after a 429 lacks %q:\n%s", want, out)
		}
	}

	c.stop(t)
	code, _, errs := runStatus(t, "--admin", adminAddr)
	if code != 2 || !strings.Contains(errs, "is regcache serve running") {
		t.Errorf("status without a mirror: exit %d, %s", code, errs)
	}
}

func TestAdminURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, err string }{
		{"127.0.0.1:5001", "http://127.0.0.1:5001", ""},
		{":5001", "http://127.0.0.1:5001", ""},
		{"[::1]:5001", "http://[::1]:5001", ""},
		{"http://127.0.0.1:5301", "http://127.0.0.1:5301", ""},
		{"http://127.0.0.1:5301/", "http://127.0.0.1:5301", ""},
		{"https://mirror.example:5001/admin/", "https://mirror.example:5001/admin", ""},
		{"127.0.0.1", "", "want host:port"},
		{"ftp://x:1", "", "the scheme must be http:// or https://"},
		{"", "", "--admin is empty"},
	}
	for _, tt := range tests {
		u, err := adminURL(tt.in)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("adminURL(%q): %v, want an error with %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || u.String() != tt.want):
			t.Errorf("adminURL(%q) = %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

// TestStatusWatch: --watch redraws in place (home and clear before each
// screen) until interrupted, and ends without an error.
func TestStatusWatch(t *testing.T) {
	hub := testenv.NewHub(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()
	var out bytes.Buffer
	root := NewRoot()
	root.SetOut(&out)
	root.SetArgs([]string{"status", "--watch", "--interval", "100ms", "--admin", admin.URL})
	ctx, cancel := context.WithTimeout(t.Context(), 450*time.Millisecond)
	defer cancel()
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("status --watch: %v", err)
	}
	screens := strings.Count(out.String(), "\x1b[H\x1b[2J")
	// The last screen may be cut by the test's own deadline mid-request.
	if good := strings.Count(out.String(), "hit ratio"); screens < 3 || good < 3 || good < screens-1 {
		t.Errorf("%d screens in 450ms at 100ms:\n%q", screens, out.String())
	}
}
