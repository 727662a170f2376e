package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/clientconfig"
)

// fakeDockerdAPI serves GET /_ping and GET /info (with the given registry
// mirrors) on a unix socket, like dockerd's API, and returns its DOCKER_HOST.
// The socket's peer is this test process, which is not dockerd.
func fakeDockerdAPI(t *testing.T, mirrors []string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "rcf") // unix socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/_ping":
			io.WriteString(w, "OK")
		case "/info":
			json.NewEncoder(w).Encode(map[string]any{"RegistryConfig": map[string]any{"Mirrors": mirrors}})
		default:
			http.NotFound(w, r)
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "unix://" + sock
}

// fakeProc makes a /proc-like directory with <pid>/comm and <pid>/cmdline
// for a process named comm with the given arguments, and a pidfile naming it.
func fakeProc(t *testing.T, pid int, comm string, args ...string) (procDir, pidfile string) {
	t.Helper()
	procDir = t.TempDir()
	d := filepath.Join(procDir, fmt.Sprint(pid))
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	cmdline := strings.Join(append([]string{"/usr/sbin/" + comm}, args...), "\x00") + "\x00"
	if err := os.WriteFile(filepath.Join(d, "comm"), []byte(comm+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "cmdline"), []byte(cmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile = filepath.Join(procDir, "docker.pid")
	if err := os.WriteFile(pidfile, []byte(fmt.Sprint(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return procDir, pidfile
}

func noSocket(t *testing.T) string { return "unix://" + filepath.Join(t.TempDir(), "none.sock") }

// Finding 1: parallel runs must not lose each other's changes.
func TestDockerEnableConcurrent(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	const n = 16
	mirror := func(i int) string { return fmt.Sprintf("http://192.0.2.%d:5000", i+1) }
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = runCLI(t, "client", "docker", "enable", "--root", root, "--no-check", "--mirror", mirror(i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "etc/docker/daemon.json")
	s, err := clientconfig.DockerRead([]byte(readFile(t, cfg)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := clientconfig.ParseDockerState([]byte(readFile(t, cfg+stateSuffix)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if !slices.Contains(s.Mirrors, mirror(i)) {
			t.Errorf("registry-mirrors lost %s: %q", mirror(i), s.Mirrors)
		}
		if !slices.Contains(s.Insecure, strings.TrimPrefix(mirror(i), "http://")) {
			t.Errorf("insecure-registries lost %s: %q", mirror(i), s.Insecure)
		}
		if rec, ok := st.Get(mirror(i)); !ok || !rec.AddedMirror {
			t.Errorf("state lost the record of %s: %+v", mirror(i), st)
		}
	}

	// Parallel disables leave nothing behind.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = runCLI(t, "client", "docker", "disable", "--root", root, "--mirror", mirror(i))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if s, _ := clientconfig.DockerRead([]byte(readFile(t, cfg))); len(s.Mirrors)+len(s.Insecure) != 0 {
		t.Errorf("after parallel disables: %+v", s)
	}
}

func TestContainerdEnableConcurrent(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	const n = 12
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = runCLI(t, "client", "containerd", "enable", "--root", root, "--no-check",
				"--mirror", fmt.Sprintf("http://192.0.2.%d:5000", i+1), "--registry", "docker.io,ghcr.io")
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"docker.io", "ghcr.io"} {
		got := readFile(t, filepath.Join(root, "etc/containerd/certs.d", r, "hosts.toml"))
		for i := range n {
			if !strings.Contains(got, fmt.Sprintf(`[host."http://192.0.2.%d:5000"]`, i+1)) {
				t.Errorf("%s lost mirror %d:\n%s", r, i+1, got)
			}
		}
	}
}

// Finding 2: the state (intent) is written before daemon.json on enable, and
// the record is dropped only after daemon.json is written on disable.
func TestDockerStateOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	orig := "{\n  \"debug\": true\n}\n"
	if err := os.WriteFile(cfg, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	var order []string
	o := dockerOptions{config: cfg, pidfile: filepath.Join(dir, "none.pid"), host: noSocket(t)}
	o.mirror, o.noCheck, o.timeout = "http://192.0.2.1:5000", true, time.Second
	o.beforeWrite = func(p string) error {
		rel, err := filepath.Rel(dir, p)
		order = append(order, rel)
		return err
	}
	if err := o.enable(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := []string{"daemon.json" + stateSuffix, "daemon.json"}; !slices.Equal(order, want) {
		t.Errorf("enable wrote %q, want %q (intent first)", order, want)
	}
	order = nil
	if err := o.disable(t.Context(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := []string{"daemon.json", "daemon.json" + stateSuffix}; !slices.Equal(order, want) {
		t.Errorf("disable wrote %q, want %q (record dropped last)", order, want)
	}

	// A failed daemon.json write after the intent was recorded: disable
	// still knows the mirror is regcache's, and removes it.
	o.beforeWrite = func(p string) error {
		if filepath.Base(p) == "daemon.json" {
			return errors.New("injected write failure")
		}
		return nil
	}
	if err := o.enable(t.Context(), io.Discard); err == nil {
		t.Fatal("enable succeeded although daemon.json could not be written")
	}
	if got := readFile(t, cfg); !strings.Contains(got, `"registry-mirrors": []`) {
		t.Fatalf("daemon.json changed by a failed enable: %q", got)
	}
	st, _ := clientconfig.ParseDockerState([]byte(readFile(t, cfg+stateSuffix)))
	if _, ok := st.Get("http://192.0.2.1:5000"); !ok {
		t.Errorf("no intent recorded before the daemon.json write: %+v", st)
	}
}

// Finding 2: disable of a mirror that stays listed must not exit 0.
func TestDockerDisableUnrecordedMirrorFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	orig := "{\n  \"registry-mirrors\": [\"http://192.0.2.1:5000\"]\n}\n" // e.g. enable crashed before recording it
	if err := os.WriteFile(cfg, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "client", "docker", "disable", "--mirror", "http://192.0.2.1:5000", "--config", cfg,
		"--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t))
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("disable left the mirror and exited with %v:\n%s", err, out)
	}
	if got := readFile(t, cfg); got != orig {
		t.Fatalf("file changed: %q", got)
	}
}

// Finding 3: dockerd answers on --host but was not found through systemd or
// the pidfile, and the socket's peer is not dockerd.
func TestDockerEnableRunningButNotSignallable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	host := fakeDockerdAPI(t, nil)
	out, err := runCLI(t, "client", "docker", "enable", "--no-check", "--mirror", "http://192.0.2.1:5000",
		"--config", cfg, "--pidfile", filepath.Join(dir, "wrong.pid"), "--host", host)
	if err == nil || !strings.Contains(err.Error(), "dockerd is running but cannot be signalled") || !strings.Contains(err.Error(), "--pidfile") {
		t.Fatalf("want a 'cannot be signalled' error, got %v:\n%s", err, out)
	}
	if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("daemon.json written although dockerd cannot be reloaded: %v", err)
	}
}

// Finding 7: dockerd started with --registry-mirror/--insecure-registry
// flags would refuse to start with the same keys in daemon.json.
func TestDockerEnableRefusesFlagConflict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, mirror string
		args         []string
		flag         string
	}{
		{"mirror=", "https://m.example", []string{"--registry-mirror=https://other.example", "-H", "unix:///x"}, "--registry-mirror"},
		{"mirror sep", "https://m.example", []string{"--debug", "--registry-mirror", "https://other.example"}, "--registry-mirror"},
		{"insecure", "http://192.0.2.1:5000", []string{"--insecure-registry", "10.0.0.1:5000"}, "--insecure-registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			procDir, pidfile := fakeProc(t, 4242, "dockerd", tt.args...)
			cfg := filepath.Join(t.TempDir(), "daemon.json")
			o := dockerOptions{config: cfg, pidfile: pidfile, host: noSocket(t), procDir: procDir}
			o.mirror, o.noCheck, o.timeout = tt.mirror, true, time.Second
			o.kill = func(int, syscall.Signal) error { t.Error("dockerd signalled"); return nil }
			err := o.enable(t.Context(), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.flag) {
				t.Fatalf("want a refusal naming %s, got %v", tt.flag, err)
			}
			if _, err := os.Stat(cfg); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("daemon.json written: %v", err)
			}
		})
	}
}

// Finding 7: when dockerd does not take the change after the reload, the
// previous file and state are put back.
func TestDockerEnableRestoresAfterFailedReload(t *testing.T) {
	t.Parallel()
	procDir, pidfile := fakeProc(t, 4242, "dockerd", "--config-file", "/etc/docker/daemon.json")
	cfg := filepath.Join(t.TempDir(), "daemon.json")
	orig := "{\n  \"debug\": true\n}\n"
	if err := os.WriteFile(cfg, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	var hups int
	o := dockerOptions{config: cfg, pidfile: pidfile, host: fakeDockerdAPI(t, nil), procDir: procDir}
	o.mirror, o.noCheck, o.timeout = "http://192.0.2.1:5000", true, 500*time.Millisecond
	o.kill = func(pid int, sig syscall.Signal) error {
		if pid != 4242 || sig != syscall.SIGHUP {
			t.Errorf("signal %v to %d", sig, pid)
		}
		hups++
		return nil
	}
	err := o.enable(t.Context(), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "NOT active") {
		t.Fatalf("want a verification error, got %v", err)
	}
	if got := readFile(t, cfg); got != orig {
		t.Errorf("daemon.json not restored: %q", got)
	}
	if b, err := os.ReadFile(cfg + stateSuffix); err == nil {
		if st, _ := clientconfig.ParseDockerState(b); len(st.Changes) != 0 {
			t.Errorf("state not restored: %s", b)
		}
	}
	if hups == 0 {
		t.Error("dockerd never signalled")
	}
}

// Finding 8: the first pre-regcache content is kept as .regcache-orig.
func TestDockerKeepsOriginal(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	orig := "{\n  \"debug\": true\n}\n"
	if err := os.WriteFile(cfg, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--config", cfg, "--no-check", "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t)}
	for _, m := range []string{"http://192.0.2.1:5000", "http://192.0.2.2:5000"} {
		for _, action := range []string{"enable", "disable", "enable"} {
			if out, err := runCLI(t, append([]string{"client", "docker", action, "--mirror", m}, base...)...); err != nil {
				t.Fatalf("%s %s: %v\n%s", action, m, err, out)
			}
		}
	}
	b, err := os.ReadFile(cfg + origSuffix)
	if err != nil || string(b) != orig {
		t.Fatalf("%s: %q, %v; want the original %q", origSuffix, b, err, orig)
	}
	if fi, _ := os.Stat(cfg + origSuffix); fi.Mode().Perm() != 0o600 {
		t.Errorf("original copy has mode %v, want 0600", fi.Mode().Perm())
	}
	// A file regcache created: an empty original says there was none.
	created := filepath.Join(dir, "new", "daemon.json")
	if _, err := runCLI(t, "client", "docker", "enable", "--mirror", "http://192.0.2.1:5000", "--config", created,
		"--no-check", "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "client", "docker", "enable", "--mirror", "http://192.0.2.2:5000", "--config", created,
		"--no-check", "--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t)); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(created + origSuffix); err != nil || len(b) != 0 {
		t.Errorf("original of a created file: %q, %v; want empty", b, err)
	}
}

// Finding 8: a mirror the operator had is not recorded as regcache's.
func TestDockerEnableRecordsOnlyAdditions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mirror := v2Server(t)
	m, _ := clientconfig.ParseMirror(mirror.URL)
	cfg := filepath.Join(dir, "daemon.json")
	orig := fmt.Sprintf("{\n  \"registry-mirrors\": [%q],\n  \"insecure-registries\": [%q]\n}\n", m.URL, m.Host)
	if err := os.WriteFile(cfg, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "client", "docker", "enable", "--mirror", mirror.URL, "--config", cfg,
		"--pidfile", filepath.Join(dir, "none.pid"), "--host", noSocket(t)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if b, err := os.ReadFile(cfg + stateSuffix); err == nil {
		if st, _ := clientconfig.ParseDockerState(b); len(st.Changes) != 0 {
			t.Errorf("state records the operator's mirror: %s", b)
		}
	}
	out, _ := runCLI(t, "client", "docker", "status", "--config", cfg, "--host", noSocket(t))
	if !strings.Contains(out, "configured=true (by operator)") {
		t.Errorf("status claims the operator's mirror:\n%s", out)
	}
}

// Finding 5: podman status and disable compare the drop-in's mirror with
// --mirror; status without --mirror probes the configured one.
func TestPodmanMirrorMismatch(t *testing.T) {
	t.Parallel()
	answering := v2Server(t)
	dir := t.TempDir()
	dropIn := filepath.Join(dir, clientconfig.PodmanDropInName)
	m, _ := clientconfig.ParseMirror("http://127.0.0.1:1") // configured, not answering
	if err := os.WriteFile(dropIn, clientconfig.PodmanDropIn(clientconfig.PodmanOptions{Mirror: m, Registries: []string{"docker.io", "ghcr.io"}}), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--dir", dir, "--config", filepath.Join(dir, "registries.conf"), "--timeout", "2s"}
	out, err := runCLI(t, append([]string{"client", "podman", "status", "--mirror", answering.URL}, args...)...)
	if !errors.Is(err, errNotActive) || !strings.Contains(out, m.URL) {
		t.Errorf("status --mirror <other>: %v\n%s", err, out)
	}
	out, err = runCLI(t, append([]string{"client", "podman", "status"}, args...)...)
	if !errors.Is(err, errNotActive) || !strings.Contains(out, "not answering") {
		t.Errorf("status without --mirror did not probe the configured mirror: %v\n%s", err, out)
	}
	out, err = runCLI(t, append([]string{"client", "podman", "disable", "--mirror", answering.URL}, args...)...)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("disable --mirror <other>: %v\n%s", err, out)
	}
	if _, err := os.Stat(dropIn); err != nil {
		t.Fatalf("disable of another mirror removed the drop-in: %v", err)
	}
	if _, err := runCLI(t, append([]string{"client", "podman", "disable", "--mirror", m.URL}, args...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dropIn); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("disable of the configured mirror left the drop-in: %v", err)
	}
}

// Finding 6: an operator's [[registry]] for the same prefix would be
// replaced by regcache's drop-in.
func TestPodmanRefusesPrefixConflict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, content string
		conflict            bool
	}{
		{"main blocked", "registries.conf", "unqualified-search-registries = [\"docker.io\"]\n\n[[registry]]\nprefix = \"docker.io\"\nblocked = true\n", true},
		{"drop-in location only", "registries.conf.d/50-site.conf", "[[registry]]\nlocation = \"docker.io\"\n\n[[registry.mirror]]\nlocation = \"site-mirror.example\"\n", true},
		{"later drop-in", "registries.conf.d/99-late.conf", "[[registry]]\nprefix = \"docker.io\"\nlocation = \"docker.io\"\n", true},
		{"other prefix", "registries.conf", "[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n", false},
		{"narrower prefix", "registries.conf", "[[registry]]\nprefix = \"docker.io/library\"\nlocation = \"docker.io/library\"\n", false},
		{"not a .conf", "registries.conf.d/50-site.conf.bak", "[[registry]]\nprefix = \"docker.io\"\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			p := filepath.Join(root, "etc/containers", tt.file)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := runCLI(t, "client", "podman", "enable", "--root", root, "--no-check", "--mirror", "http://192.0.2.1:5000")
			_, statErr := os.Stat(filepath.Join(root, "etc/containers/registries.conf.d", clientconfig.PodmanDropInName))
			if !tt.conflict {
				if err != nil || statErr != nil {
					t.Fatalf("enable: %v, drop-in: %v\n%s", err, statErr, out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `"docker.io"`) {
				t.Fatalf("want a conflict naming %s, got %v\n%s", p, err, out)
			}
			if statErr == nil {
				t.Error("drop-in written despite the conflict")
			}
		})
	}
}
