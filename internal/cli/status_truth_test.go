package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/testenv"
)

// TestStatusWrongToken: `regcache status` against the real serve command
// started with a password the Docker Hub stand-in refuses exits 1 and says
// the credentials are rejected, before any pull; once the password file
// is fixed it exits 0, with no restart.
func TestStatusWrongToken(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.Seed(t)
	hub.SetAuth(true)
	hub.SetCredentials("ci", "right-token")
	pwFile := filepath.Join(t.TempDir(), "hub-token")
	if err := os.WriteFile(pwFile, []byte("wrong-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	logPath := filepath.Join(t.TempDir(), "regcache.log")
	env := []string{"REGCACHE_DATA=" + t.TempDir(), "REGCACHE_UPSTREAM_URL=" + hub.URL, "REGCACHE_UPSTREAM_NAME=docker.io",
		"REGCACHE_ADMIN_ADDR=" + admin, "REGCACHE_PROBE_INTERVAL=200ms", "REGCACHE_USERNAME=ci", "REGCACHE_PASSWORD_FILE=" + pwFile}
	c := startChild(t, env, logPath)
	defer c.stop(t)
	out := waitStatus(t, 1, "--admin", admin)
	for _, want := range []string{"mirror       degraded", "credentials-rejected", "answered 401", "degraded:\n- docker.io: credentials rejected"} {
		if !strings.Contains(out, want) {
			t.Errorf("status with a wrong token lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wrong-token") {
		t.Error("status shows the password")
	}
	if err := os.WriteFile(pwFile, []byte("right-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = waitStatus(t, 0, "--admin", admin)
	if !strings.Contains(out, "mirror       healthy") {
		t.Errorf("status after the fix:\n%s", out)
	}
}
