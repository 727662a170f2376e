package cli

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// TestHealthcheck: `regcache healthcheck` exits 0 with the /readyz answer
// of a running mirror's admin listener, found from --admin or from the
// configuration serve reads (an unspecified host dialled on loopback, the
// REGCACHE_DEFAULTS file of the image included), and fails when nothing
// answers or the answer is not 200.
func TestHealthcheck(t *testing.T) {
	hub := testenv.NewHub(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL})
	ln := testenv.Listen(t)
	admin := &httptest.Server{Listener: ln, Config: &http.Server{Handler: m.App.AdminHandler()}}
	admin.Start()
	defer admin.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	out, err := runCLI(t, "healthcheck", "--admin", ln.Addr().String())
	// A mirror that is degraded but serves (an upstream unreachable with
	// content cached) is still healthy for a container engine; one whose
	// pulls fail (nothing cached and the upstream unreachable) is not.
	ready := func(out string) bool {
		return strings.HasPrefix(out, "ok") || strings.HasPrefix(out, "ready, degraded")
	}
	if err != nil || !ready(out) {
		t.Errorf("--admin: %q, %v", out, err)
	}

	t.Setenv("REGCACHE_ADMIN_ADDR", "0.0.0.0:"+port)
	if out, err := runCLI(t, "healthcheck"); err != nil || !ready(out) {
		t.Errorf("from REGCACHE_ADMIN_ADDR: %q, %v", out, err)
	}
	os.Unsetenv("REGCACHE_ADMIN_ADDR")
	defaults := filepath.Join(t.TempDir(), "defaults.yaml")
	if err := os.WriteFile(defaults, []byte("admin_addr: \":"+port+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGCACHE_DEFAULTS", defaults)
	if out, err := runCLI(t, "healthcheck"); err != nil || !ready(out) {
		t.Errorf("from the image defaults: %q, %v", out, err)
	}

	dead := testenv.FreePort(t)
	if out, err := runCLI(t, "healthcheck", "--admin", "127.0.0.1:"+itoa(dead)); err == nil || !strings.Contains(err.Error(), "not healthy") {
		t.Errorf("nothing listening: %q, %v", out, err)
	}
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "store gone", http.StatusServiceUnavailable)
	}))
	defer failing.Close()
	if out, err := runCLI(t, "healthcheck", "--admin", strings.TrimPrefix(failing.URL, "http://")); err == nil ||
		!strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "store gone") {
		t.Errorf("a 503: %q, %v", out, err)
	}

	// The admin listener off: the registry listener is dialled.
	t.Setenv("REGCACHE_ADMIN_ADDR", "")
	t.Setenv("REGCACHE_ADDR", ":"+strings.TrimPrefix(m.Host, "127.0.0.1:"))
	if out, err := runCLI(t, "healthcheck"); err != nil || !strings.Contains(out, "registry listener at "+m.Host+" accepts connections") {
		t.Errorf("admin off: %q, %v", out, err)
	}
}

func TestLoopbackAddr(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		":5001": "127.0.0.1:5001", "0.0.0.0:5001": "127.0.0.1:5001", "[::]:5001": "127.0.0.1:5001",
		"127.0.0.1:5001": "127.0.0.1:5001", "10.1.2.3:5001": "10.1.2.3:5001", "localhost:5001": "localhost:5001",
	} {
		if got := loopbackAddr(in); got != want {
			t.Errorf("loopbackAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "regcache "+version+" (commit "+commit+", "+runtime.Version()+", ") {
		t.Errorf("version: %q, %v", out, err)
	}
}
