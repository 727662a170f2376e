package cli

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/internal/testenv"
)

// standInMirror is an in-process registry (go-containerregistry) on
// 127.0.0.1 holding library/alpine:3.20, standing in for regcache's server:
// it proves that an engine pulls through the mirror it was configured with.
type standInMirror struct {
	URL    string
	Digest string
	mu     sync.Mutex
	reqs   []string
}

func newStandInMirror(t *testing.T) *standInMirror {
	t.Helper()
	m := &standInMirror{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.reqs = append(m.reqs, r.Method+" "+r.URL.RequestURI())
		m.mu.Unlock()
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	m.URL = s.URL
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(s.URL, "http://") + "/library/alpine:3.20")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed the stand-in mirror: %v", err)
	}
	d, _ := img.Digest()
	m.Digest = d.String()
	m.mu.Lock()
	m.reqs = nil
	m.mu.Unlock()
	return m
}

// manifestGets counts GETs of library/alpine's manifests (with any query).
func (m *standInMirror) manifestGets() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, r := range m.reqs {
		if strings.HasPrefix(r, "GET /v2/library/alpine/manifests/") {
			out = append(out, r)
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
	mirror := newStandInMirror(t)
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
	mirror := newStandInMirror(t)
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
	if len(gets) == 0 || !strings.Contains(gets[0], "ns=docker.io") {
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
	mirror := newStandInMirror(t)
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
