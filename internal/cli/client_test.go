package cli

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs regcache in-process with args and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// v2Server answers /v2/ like a registry.
func v2Server(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDockerEnableDryRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	orig := "{\n  \"log-driver\": \"local\"\n}\n"
	if err := os.WriteFile(cfg, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "client", "docker", "enable", "--dry-run", "--mirror", "http://192.0.2.1:5000",
		"--config", cfg, "--pidfile", filepath.Join(dir, "none.pid"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"--- a" + cfg, "+++ b" + cfg, "@@ -1,3 +1,5 @@",
		`-  "log-driver": "local"`, `+  "log-driver": "local",`,
		`+  "registry-mirrors": ["http://192.0.2.1:5000"],`, `+  "insecure-registries": ["192.0.2.1:5000"]`,
		"would not reload dockerd: it is not running (no live PID in " + filepath.Join(dir, "none.pid") + ", nothing answers on ",
		"); the change applies when it starts",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out)
		}
	}
	if got := readFile(t, cfg); got != orig {
		t.Fatalf("dry-run changed the file: %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("dry-run created files: %v", entries)
	}
}

func TestDockerEnableRefusesInvalidJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	orig := "{\n  \"debug\": true,\n}\n"
	if err := os.WriteFile(cfg, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "client", "docker", "enable", "--no-check", "--mirror", "http://192.0.2.1", "--config", cfg)
	if err == nil || !strings.Contains(err.Error(), "line 3, column 1") || !strings.Contains(err.Error(), "nothing written") {
		t.Fatalf("want a positioned parse error, got %v", err)
	}
	if got := readFile(t, cfg); got != orig {
		t.Fatalf("invalid file was rewritten: %q", got)
	}
	for _, e := range entries(t, dir) {
		if e != "daemon.json" {
			t.Errorf("file created next to an invalid config: %s", e)
		}
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestDockerEnableChecksMirror(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "docker", "daemon.json")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	_, err := runCLI(t, "client", "docker", "enable", "--mirror", dead.URL, "--config", cfg, "--timeout", "2s")
	if err == nil || !strings.Contains(err.Error(), "--no-check") {
		t.Fatalf("want a probe error, got %v", err)
	}
	if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file written although the mirror did not answer: %v", err)
	}

	notRegistry := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notRegistry.Close)
	if _, err := runCLI(t, "client", "docker", "enable", "--mirror", notRegistry.URL, "--config", cfg); err == nil || !strings.Contains(err.Error(), "want 200 or 401") {
		t.Fatalf("a 404 on /v2/ accepted: %v", err)
	}

	mirror := v2Server(t)
	// An https:// URL of a plain-HTTP mirror: the fix is http://, not --no-check.
	plain := "https://" + strings.TrimPrefix(mirror.URL, "http://")
	if _, err := runCLI(t, "client", "docker", "enable", "--mirror", plain, "--config", cfg); err == nil ||
		!strings.Contains(err.Error(), "answers plain HTTP, not HTTPS: use --mirror "+mirror.URL) || strings.Contains(err.Error(), "--no-check") {
		t.Fatalf("https:// against a plain-HTTP mirror: %v", err)
	}
	out, err := runCLI(t, "client", "docker", "enable", "--mirror", mirror.URL, "--config", cfg, "--pidfile", filepath.Join(dir, "none.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "the change applies when dockerd starts") {
		t.Errorf("no note that dockerd is not running:\n%s", out)
	}
	fi, err := os.Stat(cfg)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("new daemon.json: %v %v", fi, err)
	}
}

func TestDockerDisableKeepsOperatorEntries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real := filepath.Join(dir, "real.json")
	cfg := filepath.Join(dir, "daemon.json")
	orig := "{\n  \"registry-mirrors\": [\"http://192.0.2.1:5000\"],\n  \"insecure-registries\": [\"192.0.2.1:5000\"]\n}\n"
	if err := os.WriteFile(real, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.json", cfg); err != nil {
		t.Fatal(err)
	}
	args := []string{"--mirror", "http://192.0.2.1:5000", "--config", cfg, "--no-check", "--pidfile", filepath.Join(dir, "none.pid")}
	if _, err := runCLI(t, append([]string{"client", "docker", "enable"}, args...)...); err != nil {
		t.Fatal(err)
	}
	// The mirror stays, and disable says so with a non-zero exit.
	out, err := runCLI(t, append([]string{"client", "docker", "disable"}, args...)...)
	if err == nil || !strings.Contains(err.Error(), "regcache did not add") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("disable of the operator's mirror: %v\n%s", err, out)
	}
	if got := readFile(t, real); got != orig {
		t.Fatalf("operator's mirror removed: %q", got)
	}
	if fi, err := os.Lstat(cfg); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatal("symlink replaced")
	}
	// --force removes it.
	if _, err := runCLI(t, append([]string{"client", "docker", "disable", "--force"}, args...)...); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"registry-mirrors\": [],\n  \"insecure-registries\": []\n}\n"
	if got := readFile(t, real); got != want {
		t.Fatalf("after --force: %q", got)
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode changed to %v", fi.Mode().Perm())
	}
}

func TestDockerStatusExitCode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	mirror := v2Server(t)
	if _, err := runCLI(t, "client", "docker", "enable", "--mirror", mirror.URL, "--config", cfg, "--pidfile", filepath.Join(dir, "none.pid")); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "client", "docker", "status", "--config", cfg, "--host", "unix://"+filepath.Join(dir, "no.sock"))
	if !errors.Is(err, errNotActive) {
		t.Fatalf("status with no dockerd: %v\n%s", err, out)
	}
	if !strings.Contains(out, "configured=true (by regcache) active=false answering") {
		t.Errorf("status output:\n%s", out)
	}
}

func TestContainerdAndPodmanFiles(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mirror := v2Server(t)
	out, err := runCLI(t, "client", "containerd", "enable", "--root", root, "--mirror", mirror.URL, "--registry", "docker.io,ghcr.io")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "does not set the registry config_path") {
		t.Errorf("no config_path advice:\n%s", out)
	}
	for _, r := range []string{"docker.io", "ghcr.io"} {
		p := filepath.Join(root, "etc/containerd/certs.d", r, "hosts.toml")
		if !strings.Contains(readFile(t, p), `[host."`+mirror.URL+`"]`) {
			t.Errorf("%s lacks the mirror", p)
		}
	}
	if _, err := runCLI(t, "client", "containerd", "status", "--root", root, "--mirror", mirror.URL, "--registry", "docker.io,ghcr.io"); err != nil {
		t.Fatalf("containerd status: %v", err)
	}
	if _, err := runCLI(t, "client", "containerd", "disable", "--root", root, "--mirror", mirror.URL, "--registry", "docker.io,ghcr.io"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/containerd/certs.d/docker.io/hosts.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hosts.toml regcache created is still there: %v", err)
	}
	if _, err := runCLI(t, "client", "containerd", "status", "--root", root, "--mirror", mirror.URL); !errors.Is(err, errNotActive) {
		t.Errorf("status after disable: %v", err)
	}

	if _, err := runCLI(t, "client", "podman", "enable", "--root", root, "--mirror", mirror.URL, "--registry", "docker.io"); err != nil {
		t.Fatal(err)
	}
	dropIn := filepath.Join(root, "etc/containers/registries.conf.d/90-regcache.conf")
	if !strings.Contains(readFile(t, dropIn), "insecure = true") {
		t.Error("drop-in lacks insecure = true")
	}
	if _, err := runCLI(t, "client", "podman", "status", "--root", root, "--mirror", mirror.URL); err != nil {
		t.Errorf("podman status: %v", err)
	}
	if _, err := runCLI(t, "client", "podman", "disable", "--root", root, "--mirror", mirror.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dropIn); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("drop-in still there: %v", err)
	}
}
