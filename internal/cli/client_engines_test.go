package cli

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// testMirror is a real regcache (apptest) on 127.0.0.1 whose Docker Hub
// upstream is an in-process registry (go-containerregistry) holding
// library/alpine:3.20: it proves that an engine configured by `regcache
// client` pulls through regcache.
type testMirror struct {
	*apptest.Mirror
	Digest string // of library/alpine:3.20 on the upstream
}

func newTestMirror(t *testing.T) *testMirror {
	t.Helper()
	up := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(up.Close)
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(up.URL, "http://") + "/library/alpine:3.20")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed the upstream: %v", err)
	}
	d, _ := img.Digest()
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	return &testMirror{Mirror: m, Digest: d.String()}
}

// manifestGets lists regcache's access-log lines for GETs of
// library/alpine's manifests, as "GET <path> route=<route> upstream=<name>".
func (m *testMirror) manifestGets() []string {
	var out []string
	for line := range strings.Lines(m.Log()) {
		var l struct{ Msg, Method, Path, Route, Upstream string }
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "request" {
			continue
		}
		if l.Method == http.MethodGet && strings.HasPrefix(l.Path, "/v2/library/alpine/manifests/") {
			out = append(out, l.Method+" "+l.Path+" route="+l.Route+" upstream="+l.Upstream)
		}
	}
	return out
}

func waitMirrors(t *testing.T, d *testenv.Dockerd, want func([]string) bool) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := d.Mirrors(t.Context())
		if err == nil && want(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd mirrors %q (err %v); log:\n%s", got, err, d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDockerEngine runs enable and disable against a real dockerd: the
// mirror becomes active without a restart, docker pull goes through it, and
// disable really clears it (the emptied-list trap).
func TestDockerEngine(t *testing.T) {
	t.Parallel()
	mirror := newTestMirror(t)
	orig := "{\n  \"debug\": false,\n  \"max-concurrent-downloads\": 2\n}\n"
	d := testenv.StartDockerd(t, testenv.DockerdOptions{Config: orig})
	args := []string{"--mirror", mirror.URL, "--config", d.ConfigFile, "--pidfile", d.PIDFile, "--host", d.Host}

	out, err := runCLI(t, append([]string{"client", "docker", "enable"}, args...)...)
	if err != nil {
		t.Fatalf("enable: %v\n%s\n%s", err, out, d.Log())
	}
	if !strings.Contains(out, "dockerd reports "+mirror.URL+" as an active registry mirror") {
		t.Errorf("enable output:\n%s", out)
	}
	waitMirrors(t, d, func(m []string) bool { return slices.Contains(m, mirror.URL+"/") })
	if !d.Running() {
		t.Fatal("dockerd exited")
	}
	if pid := readFile(t, d.PIDFile); strings.TrimSpace(pid) != itoa(d.PID) {
		t.Fatalf("dockerd PID changed: %s != %d", pid, d.PID)
	}

	// Docker Hub itself is unreachable (dead proxy): the pull must use the mirror.
	if out, err := d.Docker(t.Context(), "pull", "alpine:3.20"); err != nil {
		t.Fatalf("docker pull: %v\n%s\n%s", err, out, d.Log())
	}
	if got := mirror.manifestGets(); len(got) == 0 {
		t.Fatal("docker pull did not ask the mirror for the manifest")
	}
	if out, err := runCLI(t, "client", "docker", "status", "--config", d.ConfigFile, "--host", d.Host); err != nil {
		t.Errorf("status while active: %v\n%s", err, out)
	}

	out, err = runCLI(t, append([]string{"client", "docker", "disable"}, args...)...)
	if err != nil {
		t.Fatalf("disable: %v\n%s\n%s", err, out, d.Log())
	}
	waitMirrors(t, d, func(m []string) bool { return len(m) == 0 })
	want := "{\n  \"debug\": false,\n  \"max-concurrent-downloads\": 2,\n  \"registry-mirrors\": [],\n  \"insecure-registries\": []\n}\n"
	if got := readFile(t, d.ConfigFile); got != want {
		t.Errorf("daemon.json after disable:\n%q\nwant\n%q", got, want)
	}
	if _, err := runCLI(t, "client", "docker", "status", "--config", d.ConfigFile, "--host", d.Host, "--mirror", mirror.URL); err == nil {
		t.Error("status exits 0 after disable")
	}

	// The trap itself: deleting the key instead of emptying it leaves the
	// mirror active after SIGHUP.
	if _, err := runCLI(t, append([]string{"client", "docker", "enable"}, args...)...); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.ConfigFile, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if got, _ := d.Mirrors(t.Context()); !slices.Contains(got, mirror.URL+"/") {
		t.Errorf("dockerd dropped the mirror although the key was deleted (the trap is gone?): %q", got)
	} else {
		t.Logf("confirmed: with registry-mirrors deleted, SIGHUP leaves %q active", got)
	}
	if !d.Running() || strings.TrimSpace(readFile(t, d.PIDFile)) != itoa(d.PID) {
		t.Fatal("dockerd restarted")
	}
}

// TestContainerdEngine: after enable, ctr --hosts-dir pulls through the
// mirror, with containerd's ?ns=docker.io.
func TestContainerdEngine(t *testing.T) {
	t.Parallel()
	mirror := newTestMirror(t)
	c := testenv.StartContainerd(t, testenv.ContainerdOptions{})
	out, err := runCLI(t, "client", "containerd", "enable", "--mirror", mirror.URL, "--config", c.ConfigFile, "--registry", "docker.io")
	if err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	if strings.Contains(out, "does not set the registry config_path") {
		t.Errorf("config_path not found in %s:\n%s", c.ConfigFile, out)
	}
	if out, err := c.Pull(t.Context(), "docker.io/library/alpine:3.20"); err != nil {
		t.Fatalf("ctr pull: %v\n%s\n%s", err, out, c.Log())
	}
	gets := mirror.manifestGets()
	if len(gets) == 0 || !strings.Contains(gets[0], "route=ns upstream=docker.io") {
		t.Fatalf("manifest requests at the mirror: %q", gets)
	}
	out, err = c.Ctr(t.Context(), "images", "ls", "-q")
	if err != nil || !strings.Contains(out, "docker.io/library/alpine:3.20") {
		t.Fatalf("image not listed: %v %s", err, out)
	}
	if _, err := runCLI(t, "client", "containerd", "disable", "--mirror", mirror.URL, "--config", c.ConfigFile, "--registry", "docker.io"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.HostsDir + "/docker.io/hosts.toml"); !os.IsNotExist(err) {
		t.Errorf("hosts.toml left after disable: %v", err)
	}
}

// TestPodmanEngine: after enable, podman pulls through the mirror.
func TestPodmanEngine(t *testing.T) {
	t.Parallel()
	mirror := newTestMirror(t)
	p := testenv.NewPodman(t, testenv.PodmanOptions{})
	args := []string{"--mirror", mirror.URL, "--dir", p.DropInDir, "--config", p.RegistriesConf}
	if out, err := runCLI(t, append([]string{"client", "podman", "enable"}, args...)...); err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	out, err := p.Run(t.Context(), "pull", "docker.io/library/alpine:3.20")
	if err != nil {
		t.Fatalf("podman pull: %v\n%s", err, out)
	}
	if len(mirror.manifestGets()) == 0 {
		t.Fatal("podman did not ask the mirror for the manifest")
	}
	if _, err := runCLI(t, append([]string{"client", "podman", "disable"}, args...)...); err != nil {
		t.Fatal(err)
	}
	// Without the drop-in the pull goes to docker.io, which the dead proxy blocks.
	if out, err := p.Run(t.Context(), "pull", "docker.io/library/alpine:3.20"); err == nil {
		t.Fatalf("pull succeeded without the mirror:\n%s", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDockerEngineWrongPidfile: dockerd runs, but --pidfile names no dockerd
// and no docker.service exists (snap, another unit name, rootless, a custom
// pidfile): enable must not report "not running" and exit 0; it finds
// dockerd as the peer of its API socket and reloads it.
func TestDockerEngineWrongPidfile(t *testing.T) {
	t.Parallel()
	mirror := newTestMirror(t)
	d := testenv.StartDockerd(t, testenv.DockerdOptions{})
	args := []string{"--mirror", mirror.URL, "--config", d.ConfigFile, "--pidfile", d.Dir + "/wrong.pid", "--host", d.Host}
	out, err := runCLI(t, append([]string{"client", "docker", "enable"}, args...)...)
	if err != nil {
		t.Fatalf("enable: %v\n%s\n%s", err, out, d.Log())
	}
	if !strings.Contains(out, "sent SIGHUP to dockerd (PID "+itoa(d.PID)) {
		t.Errorf("enable did not signal dockerd by its socket's peer:\n%s", out)
	}
	waitMirrors(t, d, func(m []string) bool { return slices.Contains(m, mirror.URL+"/") })
	if out, err := runCLI(t, append([]string{"client", "docker", "disable"}, args...)...); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	waitMirrors(t, d, func(m []string) bool { return len(m) == 0 })
	if !d.Running() {
		t.Fatal("dockerd exited")
	}
}

// TestDockerEngineDisableWithoutMirror: against a real dockerd, enable with
// --mirror as host:port, disable without --mirror (from the state), and
// nothing of regcache's is left beside daemon.json but its one directory;
// with dockerd stopped, status and the dry-run say that dockerd is not
// running.
func TestDockerEngineDisableWithoutMirror(t *testing.T) {
	t.Parallel()
	mirror := newTestMirror(t)
	d := testenv.StartDockerd(t, testenv.DockerdOptions{})
	hostPort := strings.TrimPrefix(mirror.URL, "http://")
	common := []string{"--config", d.ConfigFile, "--pidfile", d.PIDFile, "--host", d.Host}
	if out, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", hostPort}, common...)...); err != nil {
		t.Fatalf("enable --mirror %s: %v\n%s\n%s", hostPort, err, out, d.Log())
	}
	waitMirrors(t, d, func(m []string) bool { return slices.Contains(m, mirror.URL+"/") })
	out, err := runCLI(t, append([]string{"client", "docker", "disable"}, common...)...)
	if err != nil {
		t.Fatalf("disable without --mirror: %v\n%s\n%s", err, out, d.Log())
	}
	if !strings.Contains(out, "dockerd no longer uses "+mirror.URL) || !strings.Contains(out, `left "registry-mirrors": []`) {
		t.Errorf("disable output:\n%s", out)
	}
	waitMirrors(t, d, func(m []string) bool { return len(m) == 0 })
	var ours []string
	for _, e := range entries(t, d.Dir) {
		if strings.HasPrefix(e, "daemon.json") {
			ours = append(ours, e)
		}
	}
	if want := []string{"daemon.json", "daemon.json.regcache"}; !slices.Equal(ours, want) {
		t.Errorf("beside daemon.json after enable+disable: %q, want %q", ours, want)
	}
	if got, want := entries(t, d.ConfigFile+".regcache"), []string{"backup", "orig"}; !slices.Equal(got, want) {
		t.Errorf("in daemon.json.regcache: %q, want %q", got, want)
	}

	if _, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", hostPort}, common...)...); err != nil {
		t.Fatal(err)
	}
	d.Stop(t)
	out, err = runCLI(t, append([]string{"client", "docker", "status"}, common...)...)
	if err == nil || !strings.Contains(err.Error(), "dockerd is not running") || !strings.Contains(out, "dockerd is not running") {
		t.Errorf("status with dockerd stopped: %v\n%s", err, out)
	}
	out, err = runCLI(t, append([]string{"client", "docker", "disable", "--dry-run"}, common...)...)
	if err != nil || !strings.Contains(out, "would not reload dockerd: it is not running") || strings.Contains(out, "and check that") {
		t.Errorf("dry-run with dockerd stopped: %v\n%s", err, out)
	}
}
