// Package testenv starts the real and fake registries that regcache's tests
// run against: Debian's docker-registry (Distribution 2.8) as a subprocess,
// an in-process Docker Hub stand-in with faults, and deterministic test
// images to push into either.
//
// Everything listens on 127.0.0.1 only and is torn down with t.Cleanup, so a
// test needs no setup beyond calling the constructor.
package testenv

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"testing"
	"time"
)

// debianPackages names the Debian package that provides each external tool,
// so a missing tool in CI fails with the fix in the message.
var debianPackages = map[string]string{
	"docker-registry": "docker-registry",
	"skopeo":          "skopeo",
	"podman":          "podman",
	"containerd":      "containerd",
	"ctr":             "containerd",
	"dockerd":         "docker.io",
	"docker":          "docker.io",
	"nginx":           "nginx",
	"htpasswd":        "apache2-utils",
	"chromium":        "chromium",
	"promtool":        "prometheus",
	"make":            "make",
	"systemd-analyze": "systemd",
	"redis-server":    "redis-server",
}

// RequireTool returns the path of the executable name. When it is not
// installed the test is skipped, or fails when CI=true, because a CI run that
// silently skips its end-to-end tests proves nothing.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	pkg := debianPackages[name]
	if pkg == "" {
		pkg = name
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (apt-get install %s): %v", name, pkg, err)
		return ""
	}
	t.Skipf("%s not found (apt-get install %s); skipping", name, pkg)
	return ""
}

// Listen returns a TCP listener on a free 127.0.0.1 port, closed at cleanup.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// FreePort returns a 127.0.0.1 port that was free a moment ago, for servers
// that must bind the port themselves (subprocesses). Another process may take
// it in between; on a test machine that is rare enough to accept.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitHTTP polls url with GET until the server answers with any status below
// 500, and fails the test if that does not happen within timeout.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := waitHTTP(t.Context(), url, timeout); err != nil {
		t.Fatalf("waiting for %s: %v", url, err)
	}
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var lastErr error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
			lastErr = &statusError{resp.StatusCode}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return lastErr
		case <-time.After(20 * time.Millisecond):
		}
	}
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "status " + http.StatusText(e.code) }
