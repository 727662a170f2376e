package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/testenv"
)

// verifyMirror is a regcache with its admin listener on 127.0.0.1, over
// the Docker Hub stand-in (which has no canary: only the mirror makes it up).
func verifyMirror(t *testing.T) *apptest.Mirror {
	t.Helper()
	hub := testenv.NewHub(t)
	return apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0"})
}

// wrapper writes an executable script that runs command with the
// arguments given plus env and the dead proxy, so the engine's client
// process (ctr, podman) cannot reach the real Docker Hub either.
func wrapper(t *testing.T, name string, env []string, command ...string) string {
	t.Helper()
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	var b strings.Builder
	b.WriteString("#!/bin/sh\nexec env -i PATH=\"$PATH\"")
	for _, e := range append(slices.Clone(env), testenv.DeadProxyEnv()...) {
		b.WriteString(" " + q(e))
	}
	for _, c := range command {
		b.WriteString(" " + q(c))
	}
	b.WriteString(" \"$@\"\n")
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkListed: the mirror's fleet table lists this node with the engine,
// and the canary arrival.
func checkListed(t *testing.T, m *apptest.Mirror, engines ...string) {
	t.Helper()
	st := m.App.Status()
	if st.Fleet == nil || len(st.Fleet.Canaries) == 0 {
		t.Fatalf("the mirror lists no canary arrival: %+v", st.Fleet)
	}
	if c := st.Fleet.Canaries[0]; !slices.Contains(engines, c.Engine.Name) || c.Addr.String() != "127.0.0.1" {
		t.Errorf("canary arrival %+v, want from 127.0.0.1 by one of %q", c, engines)
	}
	if st.Fleet.LastHour < 1 || !slices.ContainsFunc(st.Fleet.Recent, func(n fleet.Node) bool {
		return n.Addr.String() == "127.0.0.1" && slices.Contains(engines, n.Engine.Name) && n.Pulls > 0
	}) {
		t.Errorf("the fleet table does not list the node: %+v", st.Fleet)
	}
}

// TestVerifyDockerd: `client docker status --verify` with a real dockerd
// pointed at the mirror exits 0 and the mirror lists the node; pointed at
// another mirror, the pull works but the mirror never saw the tag: exit 1
// "pulled from elsewhere"; with the mirror removed from daemon.json,
// dockerd goes to Docker Hub (the dead proxy): exit 1 with dockerd's error.
func TestVerifyDockerd(t *testing.T) {
	t.Parallel()
	m := verifyMirror(t)
	other := verifyMirror(t)
	d := testenv.StartDockerd(t, testenv.DockerdOptions{})
	common := []string{"--config", d.ConfigFile, "--pidfile", d.PIDFile, "--host", d.Host}
	status := append([]string{"client", "docker", "status", "--verify", "--admin", m.Admin}, common...)

	if out, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", m.URL}, common...)...); err != nil {
		t.Fatalf("enable: %v\n%s\n%s", err, out, d.Log())
	}
	waitMirrors(t, d, func(ms []string) bool { return slices.Contains(ms, m.URL+"/") })
	out, err := runCLI(t, status...)
	if err != nil || !strings.Contains(out, "verify: the mirror served v-") || !strings.Contains(out, "to dockerd") || !strings.Contains(out, "verify: ok: dockerd pulls through the mirror") {
		t.Fatalf("status --verify through the mirror: %v\n%s\n%s", err, out, d.Log())
	}
	t.Logf("through the mirror:\n%s", out)
	checkListed(t, m, fleet.Dockerd)
	if out, _ := runCLI(t, "status", "--admin", m.Admin); !strings.Contains(out, "nodes        1 in the last hour, 1 in the last day, 0 gone quiet") {
		t.Errorf("regcache status does not show the node:\n%s", out)
	}
	if images, _ := d.Docker(t.Context(), "images", "-q", "regcache/canary"); strings.TrimSpace(images) != "" {
		t.Errorf("the canary image was left behind: %q", images)
	}

	// Another mirror serves the canary too: the pull works, but not through m.
	if out, err := runCLI(t, append([]string{"client", "docker", "disable"}, common...)...); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	if out, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", other.URL}, common...)...); err != nil {
		t.Fatalf("enable the other mirror: %v\n%s", err, out)
	}
	waitMirrors(t, d, func(ms []string) bool { return slices.Contains(ms, other.URL+"/") })
	out, err = runCLI(t, status...)
	if err == nil || !strings.Contains(err.Error(), "the engine pulled from elsewhere: the mirror never saw this tag") {
		t.Errorf("status --verify with dockerd on another mirror: %v\n%s", err, out)
	}

	// A mirror whose upstream refuses its token: the canary arrives (it
	// never leaves the mirror), but real pulls would fail there and
	// dockerd would take them to Docker Hub: /readyz says so, and so does
	// --verify.
	hub := testenv.NewHub(t)
	hub.SetCredentials("ci", "the-right-token")
	wrong := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_USERNAME": "ci", "REGCACHE_PASSWORD": "a-wrong-token"})
	waitFor(t, "the mirror with a wrong token to say so", func() bool {
		return slices.Contains(wrong.App.Status().Reasons, "credentials_rejected")
	})
	if out, err := runCLI(t, append([]string{"client", "docker", "disable"}, common...)...); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	if out, err := runCLI(t, append([]string{"client", "docker", "enable", "--mirror", wrong.URL}, common...)...); err != nil {
		t.Fatalf("enable the mirror with a wrong token: %v\n%s", err, out)
	}
	waitMirrors(t, d, func(ms []string) bool { return slices.Contains(ms, wrong.URL+"/") })
	out, err = runCLI(t, "client", "docker", "status", "--verify", "--admin", wrong.Admin, "--config", d.ConfigFile, "--pidfile", d.PIDFile, "--host", d.Host)
	t.Logf("through a mirror with a wrong upstream token:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "dockerd pulls through the mirror, but the mirror is not ready, so dockerd goes around it for real images") ||
		!strings.Contains(err.Error(), "credentials") {
		t.Errorf("status --verify through a mirror with a wrong upstream token: %v\n%s", err, out)
	}

	// No mirror at all: dockerd asks Docker Hub, which the dead proxy blocks.
	if out, err := runCLI(t, append([]string{"client", "docker", "disable"}, common...)...); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	waitMirrors(t, d, func(ms []string) bool { return len(ms) == 0 })
	out, err = runCLI(t, status...)
	t.Logf("without the mirror:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "dockerd did not pull through the mirror: the mirror never saw this tag, and the engine said: dockerd:") {
		t.Errorf("status --verify without the mirror: %v\n%s", err, out)
	}
}

// TestVerifyContainerd: the same with ctr --hosts-dir and a real
// containerd.
func TestVerifyContainerd(t *testing.T) {
	t.Parallel()
	m := verifyMirror(t)
	c := testenv.StartContainerd(t, testenv.ContainerdOptions{})
	ctr := wrapper(t, "ctr", []string{"CONTAINERD_SNAPSHOTTER=native"}, "ctr")
	common := []string{"--config", c.ConfigFile, "--registry", "docker.io"}
	status := append([]string{"client", "containerd", "status", "--verify", "--admin", m.Admin,
		"--ctr", ctr, "--address", c.Socket, "--namespace", c.Namespace, "--mirror", m.URL}, common...)
	if out, err := runCLI(t, append([]string{"client", "containerd", "enable", "--mirror", m.URL}, common...)...); err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	out, err := runCLI(t, status...)
	if err != nil || !strings.Contains(out, "verify: the mirror served v-") || !strings.Contains(out, "to containerd") || !strings.Contains(out, "verify: ok: containerd pulls through the mirror") {
		t.Fatalf("status --verify through the mirror: %v\n%s\n%s", err, out, c.Log())
	}
	t.Logf("through the mirror:\n%s", out)
	checkListed(t, m, fleet.Containerd)
	if images, _ := c.Ctr(t.Context(), "images", "ls", "-q"); strings.Contains(images, "canary") {
		t.Errorf("the canary image was left behind: %q", images)
	}
	if out, err := runCLI(t, append([]string{"client", "containerd", "disable", "--mirror", m.URL}, common...)...); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	out, err = runCLI(t, status...)
	t.Logf("without the mirror:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "containerd did not pull through the mirror: the mirror never saw this tag, and the engine said:") {
		t.Errorf("status --verify without the mirror: %v\n%s", err, out)
	}
}

// TestVerifyPodman: the same with podman and its registries.conf.d drop-in.
func TestVerifyPodman(t *testing.T) {
	t.Parallel()
	m := verifyMirror(t)
	p := testenv.NewPodman(t, testenv.PodmanOptions{})
	podman := wrapper(t, "podman", []string{"HOME=" + p.Home, "CONTAINERS_REGISTRIES_CONF=" + p.RegistriesConf,
		"XDG_RUNTIME_DIR=" + filepath.Join(p.Dir, "xdg")},
		"podman", "--root", p.Root, "--runroot", p.RunRoot, "--storage-driver", "vfs",
		"--tmpdir", filepath.Join(p.Dir, "tmp"), "--events-backend", "file", "--cgroup-manager", "cgroupfs")
	common := []string{"--dir", p.DropInDir, "--config", p.RegistriesConf}
	status := append([]string{"client", "podman", "status", "--verify", "--admin", m.Admin, "--podman", podman}, common...)
	if out, err := runCLI(t, append([]string{"client", "podman", "enable", "--mirror", m.URL}, common...)...); err != nil {
		t.Fatalf("enable: %v\n%s", err, out)
	}
	out, err := runCLI(t, status...)
	if err != nil || !strings.Contains(out, "verify: ok: podman pulls through the mirror") {
		t.Fatalf("status --verify through the mirror: %v\n%s", err, out)
	}
	t.Logf("through the mirror:\n%s", out)
	checkListed(t, m, fleet.ContainersImage, fleet.Podman)
	if images, _ := p.Run(t.Context(), "images", "-q", "docker.io/regcache/canary"); strings.TrimSpace(images) != "" {
		t.Errorf("the canary image was left behind: %q", images)
	}
	if out, err := runCLI(t, append([]string{"client", "podman", "disable", "--mirror", m.URL}, common...)...); err != nil {
		t.Fatalf("disable: %v\n%s", err, out)
	}
	out, err = runCLI(t, append(status, "--mirror", m.URL)...)
	t.Logf("without the mirror:\n%s", out)
	if err == nil || !strings.Contains(err.Error(), "podman did not pull through the mirror: the mirror never saw this tag, and the engine said:") {
		t.Errorf("status --verify without the mirror: %v\n%s", err, out)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
