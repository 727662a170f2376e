package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/clientconfig"
)

// TestDockerEnableDisableLeavesOnlyItsDirectory: after enable and disable
// (without --mirror: disable reads it from the state), the configuration
// directory holds daemon.json and regcache's one directory beside it, in
// which the record of what enable added is gone and the copies stay; and
// disable says what it left on purpose.
func TestDockerEnableDisableLeavesOnlyItsDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{\n  \"debug\": true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mirror := v2Server(t)
	hostPort := strings.TrimPrefix(mirror.URL, "http://")
	common := []string{"--config", cfg, "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t)}
	if out, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", hostPort}, common...)...); err != nil {
		t.Fatalf("enable --mirror %s: %v\n%s", hostPort, err, out)
	}
	if got, want := entries(t, dir), []string{"daemon.json", "daemon.json.regcache"}; !slices.Equal(got, want) {
		t.Errorf("after enable: %q, want %q", got, want)
	}
	if got, want := entries(t, filepath.Join(dir, "daemon.json.regcache")), []string{"backup", "orig", "state"}; !slices.Equal(got, want) {
		t.Errorf("side directory after enable: %q, want %q", got, want)
	}
	out, err := runCLI(t, append([]string{"client", "docker", "disable"}, common...)...)
	if err != nil {
		t.Fatalf("disable without --mirror: %v\n%s", err, out)
	}
	for _, want := range []string{
		`left "registry-mirrors": [] and "insecure-registries": [] in ` + cfg + " on purpose: on a reload (SIGHUP) dockerd applies only the keys present",
		"kept " + cfg + ".regcache",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("disable output lacks %q:\n%s", want, out)
		}
	}
	if got := readFile(t, cfg); got != "{\n  \"debug\": true,\n  \"registry-mirrors\": [],\n  \"insecure-registries\": []\n}\n" {
		t.Errorf("daemon.json after disable: %q", got)
	}
	if got, want := entries(t, dir), []string{"daemon.json", "daemon.json.regcache"}; !slices.Equal(got, want) {
		t.Errorf("after disable: %q, want %q", got, want)
	}
	if got, want := entries(t, filepath.Join(dir, "daemon.json.regcache")), []string{"backup", "orig"}; !slices.Equal(got, want) {
		t.Errorf("side directory after disable: %q, want %q (the record dropped)", got, want)
	}
	// Nothing recorded any more: disable without --mirror says what to do.
	_, err = runCLI(t, append([]string{"client", "docker", "disable"}, common...)...)
	if err == nil || !strings.Contains(err.Error(), "records no mirror") || !strings.Contains(err.Error(), "--mirror") {
		t.Errorf("second disable without --mirror: %v", err)
	}
}

// TestDockerDisableSeveralRecorded: with two mirrors recorded, disable
// without --mirror names them and changes nothing.
func TestDockerDisableSeveralRecorded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	common := []string{"--config", cfg, "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t), "--no-check"}
	for _, m := range []string{"192.0.2.1:5000", "https://mirror.example"} {
		if out, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", m}, common...)...); err != nil {
			t.Fatalf("enable %s: %v\n%s", m, err, out)
		}
	}
	before := readFile(t, cfg)
	_, err := runCLI(t, append([]string{"client", "docker", "disable"}, common...)...)
	if err == nil || !strings.Contains(err.Error(), "http://192.0.2.1:5000, https://mirror.example") || !strings.Contains(err.Error(), "--mirror") {
		t.Fatalf("disable without --mirror, two recorded: %v", err)
	}
	if readFile(t, cfg) != before {
		t.Error("daemon.json changed")
	}
}

// TestDockerFailedRunLeavesNothing: a run that fails before writing
// leaves no lock file and no directory.
func TestDockerFailedRunLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(cfg, []byte("{\"debug\": true,}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"enable", "disable"} {
		if _, err := runCLI(t, "client", "docker", action, "--mirror", "192.0.2.1:5000", "--no-check", "--config", cfg); err == nil {
			t.Fatalf("%s of an invalid daemon.json succeeded", action)
		}
		if got := entries(t, dir); !slices.Equal(got, []string{"daemon.json"}) {
			t.Errorf("after a failed %s: %q", action, got)
		}
	}
}

// TestDockerMovesLegacySideFiles: the state, backup and original of the
// layout before the side directory are moved into it, so disable still
// knows what enable added.
func TestDockerMovesLegacySideFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	m := "http://192.0.2.1:5000"
	files := map[string]string{
		"daemon.json":                     "{\n  \"registry-mirrors\": [\"" + m + "\"],\n  \"insecure-registries\": [\"192.0.2.1:5000\"]\n}\n",
		"daemon.json.regcache-orig":       "{}\n",
		"daemon.json.regcache-backup":     "{}\n",
		"daemon.json" + legacyStateSuffix: string(clientconfig.DockerState{Changes: []clientconfig.DockerChange{{Mirror: m, AddedMirror: true, AddedInsecure: "192.0.2.1:5000"}}}.Bytes()),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// status reads the legacy record without moving anything.
	out, _ := runCLI(t, "client", "docker", "status", "--config", cfg, "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t))
	if !strings.Contains(out, "(by regcache)") {
		t.Errorf("status does not see the legacy record:\n%s", out)
	}
	if out, err := runCLI(t, "client", "docker", "disable", "--config", cfg, "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t)); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	if got, want := entries(t, dir), []string{"daemon.json", "daemon.json.regcache"}; !slices.Equal(got, want) {
		t.Errorf("after disable: %q, want %q", got, want)
	}
	if got := readFile(t, filepath.Join(dir, "daemon.json.regcache", "orig")); got != "{}\n" {
		t.Errorf("the original was not moved: %q", got)
	}
	if got := readFile(t, cfg); strings.Contains(got, m) {
		t.Errorf("the mirror of the legacy record stays: %q", got)
	}
}

// TestContainerdAndPodmanLeaveNothing: enable then disable without --mirror
// removes the files regcache created and their directories of copies.
func TestContainerdAndPodmanLeaveNothing(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mirror := v2Server(t)
	hostPort := strings.TrimPrefix(mirror.URL, "http://")
	if out, err := runCLI(t, "client", "containerd", "enable", "--root", root, "--mirror", hostPort, "--registry", "docker.io,ghcr.io"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := runCLI(t, "client", "containerd", "status", "--root", root, "--registry", "docker.io,ghcr.io"); err != nil {
		t.Errorf("containerd status without --mirror: %v", err)
	}
	if out, err := runCLI(t, "client", "containerd", "disable", "--root", root, "--registry", "docker.io,ghcr.io"); err != nil {
		t.Fatalf("containerd disable without --mirror: %v\n%s", err, out)
	}
	for _, r := range []string{"docker.io", "ghcr.io"} {
		if got := entries(t, filepath.Join(root, "etc/containerd/certs.d", r)); len(got) != 0 {
			t.Errorf("certs.d/%s after disable: %q", r, got)
		}
	}
	_, err := runCLI(t, "client", "containerd", "disable", "--root", root)
	if err == nil || !strings.Contains(err.Error(), "no host table written by regcache") {
		t.Errorf("containerd disable with nothing of regcache's: %v", err)
	}

	if out, err := runCLI(t, "client", "podman", "enable", "--root", root, "--mirror", hostPort); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if out, err := runCLI(t, "client", "podman", "disable", "--root", root); err != nil {
		t.Fatalf("podman disable without --mirror: %v\n%s", err, out)
	}
	if got := entries(t, filepath.Join(root, "etc/containers/registries.conf.d")); len(got) != 0 {
		t.Errorf("registries.conf.d after disable: %q", got)
	}
}

// TestClientAddressForms: --mirror takes host:port and URLs alike, and
// every bad form gets one sentence that names the flag and the forms.
func TestClientAddressForms(t *testing.T) {
	t.Parallel()
	good := []struct{ in, url string }{
		{"192.0.2.1:5000", "http://192.0.2.1:5000"},
		{"http://192.0.2.1:5000", "http://192.0.2.1:5000"},
		{"http://192.0.2.1:5000/", "http://192.0.2.1:5000"},
		{" HTTP://Mirror.Example:5000 ", "http://mirror.example:5000"},
		{"https://mirror.example", "https://mirror.example"},
		{"mirror.example", "http://mirror.example"},
		{"[2001:db8::1]:5000", "http://[2001:db8::1]:5000"},
	}
	for _, tc := range good {
		m, err := parseMirrorFlag(tc.in)
		if err != nil || m.URL != tc.url {
			t.Errorf("parseMirrorFlag(%q) = %q, %v; want %q", tc.in, m.URL, err, tc.url)
		}
		dir := t.TempDir()
		out, err := runCLI(t, "client", "docker", "enable", "--dry-run", "--mirror", tc.in,
			"--config", filepath.Join(dir, "daemon.json"), "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t))
		if err != nil || !strings.Contains(out, `"registry-mirrors": ["`+tc.url+`"]`) {
			t.Errorf("enable --dry-run --mirror %q: %v\n%s", tc.in, err, out)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{"ftp://192.0.2.1", "the scheme must be http:// or https://"},
		{"http://192.0.2.1:5000/v2/x", "a path, query or fragment is not allowed"},
		{"http://u:secret@192.0.2.1", "a login does not belong"},
		{"192.0.2.1:99999", `invalid port "99999"`},
		{"192.0.2.1:", "empty port"},
		{"http://", "no host"},
		{"http://a b", "not a host:port or URL"},
	}
	for _, tc := range bad {
		_, err := parseMirrorFlag(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "--mirror") ||
			!strings.Contains(err.Error(), "give host:port (127.0.0.1:5000) or a URL") || strings.Contains(err.Error(), "secret") ||
			strings.Contains(err.Error(), "first path segment") {
			t.Errorf("parseMirrorFlag(%q): %v; want one sentence with %q", tc.in, err, tc.why)
		}
	}
}

// TestClientStatusHasNoWriteFlags: status changes nothing, so it offers
// neither --dry-run nor --no-check.
func TestClientStatusHasNoWriteFlags(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"docker", "containerd", "podman"} {
		out, err := runCLI(t, "client", engine, "status", "--help")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "--dry-run") || strings.Contains(out, "--no-check") || !strings.Contains(out, "--mirror") {
			t.Errorf("client %s status --help:\n%s", engine, out)
		}
		if _, err := runCLI(t, "client", engine, "status", "--dry-run"); err == nil || !strings.Contains(err.Error(), "unknown flag: --dry-run") {
			t.Errorf("client %s status --dry-run: %v", engine, err)
		}
	}
}

// TestDockerStatusDockerdStopped: with dockerd not running, status says so
// rather than that the mirror is not configured.
func TestDockerStatusDockerdStopped(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	pidfile := filepath.Join(dir, "none.pid")
	sock := noSocket(t)
	if _, err := runCLI(t, "client", "docker", "enable", "--no-check", "--mirror", "192.0.2.1:5000", "--config", cfg, "--pidfile", pidfile, "--host", sock); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "client", "docker", "status", "--config", cfg, "--pidfile", pidfile, "--host", sock, "--timeout", "1s")
	if !errors.Is(err, errNotActive) || !strings.Contains(err.Error(), "dockerd is not running") || strings.Contains(err.Error(), "not configured") {
		t.Fatalf("status with dockerd stopped: %v\n%s", err, out)
	}
	if !strings.Contains(out, "dockerd is not running (no live PID in "+pidfile+", nothing answers on "+sock+")") {
		t.Errorf("status output:\n%s", out)
	}
}
