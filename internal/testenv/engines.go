package testenv

// This file starts real container engines for end-to-end tests: dockerd and
// containerd as private daemons (own root, state, sockets and config, all
// under one temporary directory) and podman with private storage. They run
// as root, listen only on unix sockets in that directory, and every process
// started here is stopped by PID at cleanup, with anything dockerd mounted
// unmounted before the directory is removed.
//
// Every engine runs with HTTPS_PROXY/HTTP_PROXY pointing at a dead loopback
// port, so a fallback to the real Docker Hub fails at once and locally;
// loopback addresses are never proxied, so a mirror on 127.0.0.1 is reached
// directly.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DeadProxyEnv is the environment that sends every proxied request to a
// closed loopback port.
func DeadProxyEnv() []string {
	return []string{
		"HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=",
		"https_proxy=http://127.0.0.1:9", "http_proxy=http://127.0.0.1:9", "no_proxy=",
	}
}

// engineEnv is a minimal environment for an engine process.
func engineEnv(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	env = append(env, DeadProxyEnv()...)
	return append(env, extra...)
}

// shortTempDir makes a directory under /tmp with a short name (unix socket
// paths must stay under 108 bytes) and removes it at cleanup.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatalf("make temp dir: %v", err)
	}
	t.Cleanup(func() {
		unmountUnder(t, dir)
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// requireRoot skips (fails under CI=true) when the test is not run as root.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("real-engine tests need root")
	}
	t.Skip("real-engine tests need root")
}

// process is a daemon started by a test.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // set when exited is closed
	log    string
}

func startProcess(t testing.TB, logPath string, env []string, name string, args ...string) *process {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("create %s: %v", logPath, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // keep terminal signals away
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs; only this PID.
func (p *process) stop(t testing.TB, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(grace):
	}
	t.Logf("%s (PID %d) did not stop in %v; killing it", p.cmd.Path, p.cmd.Process.Pid, grace)
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail returns the last n bytes of the log for failure messages.
func (p *process) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// waitReady polls ready until it returns nil, the process exits, or timeout.
func (p *process) waitReady(t testing.TB, name string, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return
		}
		if !p.running() {
			t.Fatalf("%s exited during start-up (%v); log:\n%s", name, p.err, p.tail(8000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v; log:\n%s", name, timeout, err, p.tail(8000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// killPIDFile kills a leftover helper whose PID is in path, if its command
// line mentions dir (so only a process of this test is touched).
func killPIDFile(path, dir string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	cmdline, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(cmdline, []byte(dir)) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(t testing.TB, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var mounts []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			mounts = append(mounts, fields[4])
		}
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", m, err)
		}
	}
}

// unixClient is an HTTP client that dials the unix socket sock.
func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}
}

// DockerdOptions configures StartDockerd.
type DockerdOptions struct {
	// Config is the content of daemon.json; default "{}\n".
	Config string
	// Env is added to dockerd's environment.
	Env []string
}

// Dockerd is a private dockerd started by StartDockerd.
type Dockerd struct {
	Dir        string // everything below lives here
	ConfigFile string // daemon.json, read at start and on SIGHUP
	PIDFile    string
	Socket     string
	Host       string // unix://<Socket>, for DOCKER_HOST and --host
	DataRoot   string
	ExecRoot   string
	LogFile    string
	PID        int

	proc *process
}

// StartDockerd starts Debian's dockerd (docker.io) as root with its own
// data-root, exec-root, pidfile, socket and config file, the vfs storage
// driver and no iptables or bridge, and waits until its API answers. It is
// stopped, its mounts undone and its directory removed at cleanup.
func StartDockerd(t testing.TB, opts DockerdOptions) *Dockerd {
	t.Helper()
	requireRoot(t)
	bin := RequireTool(t, "dockerd")
	dir := shortTempDir(t, "rcd")
	d := &Dockerd{
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "daemon.json"),
		PIDFile:    filepath.Join(dir, "docker.pid"),
		Socket:     filepath.Join(dir, "docker.sock"),
		DataRoot:   filepath.Join(dir, "data"),
		ExecRoot:   filepath.Join(dir, "exec"),
		LogFile:    filepath.Join(dir, "dockerd.log"),
	}
	d.Host = "unix://" + d.Socket
	cfg := opts.Config
	if cfg == "" {
		cfg = "{}\n"
	}
	if err := os.WriteFile(d.ConfigFile, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write daemon.json: %v", err)
	}
	d.proc = startProcess(t, d.LogFile, engineEnv(opts.Env...), bin,
		"--config-file", d.ConfigFile,
		"--data-root", d.DataRoot,
		"--exec-root", d.ExecRoot,
		"--pidfile", d.PIDFile,
		"-H", d.Host,
		"--storage-driver", "vfs",
		"--iptables=false", "--ip-masq=false", "--bridge", "none",
	)
	d.PID = d.proc.cmd.Process.Pid
	t.Cleanup(func() {
		d.proc.stop(t, 20*time.Second)
		killPIDFile(filepath.Join(d.ExecRoot, "containerd", "containerd.pid"), dir)
	})
	client := unixClient(d.Socket)
	d.proc.waitReady(t, "dockerd", 30*time.Second, func() error {
		resp, err := client.Get("http://docker/_ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/_ping: %s", resp.Status)
		}
		return nil
	})
	return d
}

// Running reports whether the dockerd process started here is still alive.
func (d *Dockerd) Running() bool { return d.proc.running() }

// Stop stops the dockerd started here (SIGTERM to its PID, then SIGKILL
// after 20s), for tests of what happens while it is not running.
func (d *Dockerd) Stop(t testing.TB) { d.proc.stop(t, 20*time.Second) }

// Log returns the end of dockerd's log.
func (d *Dockerd) Log() string { return d.proc.tail(16000) }

// Info returns dockerd's GET /info answer.
func (d *Dockerd) Info(ctx context.Context) (map[string]any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/info", nil)
	if err != nil {
		return nil, err
	}
	resp, err := unixClient(d.Socket).Do(req)
	if err != nil {
		return nil, fmt.Errorf("dockerd /info: %w", err)
	}
	defer resp.Body.Close()
	var info map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, fmt.Errorf("decode /info: %w", err)
	}
	return info, nil
}

// Mirrors returns the registry mirrors dockerd is using now (/info
// RegistryConfig.Mirrors).
func (d *Dockerd) Mirrors(ctx context.Context) ([]string, error) {
	info, err := d.Info(ctx)
	if err != nil {
		return nil, err
	}
	rc, _ := info["RegistryConfig"].(map[string]any)
	list, _ := rc["Mirrors"].([]any)
	var out []string
	for _, m := range list {
		if s, ok := m.(string); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// Docker runs the docker CLI against this dockerd and returns its combined
// output.
func (d *Dockerd) Docker(ctx context.Context, args ...string) (string, error) {
	bin, err := exec.LookPath("docker")
	if err != nil {
		return "", fmt.Errorf("docker CLI: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = engineEnv("DOCKER_HOST="+d.Host, "DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ContainerdOptions configures StartContainerd.
type ContainerdOptions struct {
	// CRI enables the CRI plugin (off by default: it is slow to start and
	// not needed by ctr).
	CRI bool
}

// Containerd is a private containerd started by StartContainerd.
type Containerd struct {
	Dir        string
	ConfigFile string // config.toml, version 2, with the registry config_path set
	HostsDir   string // the config_path: <HostsDir>/<registry>/hosts.toml
	Socket     string
	LogFile    string
	PID        int
	Namespace  string

	proc *process
	ctr  string // the ctr binary: "ctr" on PATH unless set
}

// StartContainerd starts Debian's containerd with its own root, state,
// sockets and config (config_path = HostsDir), and waits until it answers.
func StartContainerd(t testing.TB, opts ContainerdOptions) *Containerd {
	t.Helper()
	requireRoot(t)
	bin := RequireTool(t, "containerd")
	RequireTool(t, "ctr")
	dir := shortTempDir(t, "rcc")
	c := &Containerd{
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "config.toml"),
		HostsDir:   filepath.Join(dir, "certs.d"),
		Socket:     filepath.Join(dir, "c.sock"),
		LogFile:    filepath.Join(dir, "containerd.log"),
		Namespace:  "regcache-test",
	}
	disabled := `disabled_plugins = ["io.containerd.grpc.v1.cri"]`
	if opts.CRI {
		disabled = ""
	}
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
%[3]s

[grpc]
  address = %[4]q

[ttrpc]
  address = "%[4]s.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), disabled, c.Socket, filepath.Join(dir, "opt"), c.HostsDir)
	c.launch(t, bin, cfg)
	return c
}

// launch writes cfg as the daemon's configuration, starts bin on it
// (stopped at the test's end) and waits until ctr answers.
func (c *Containerd) launch(t testing.TB, bin, cfg string) {
	t.Helper()
	if err := os.MkdirAll(c.HostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.ConfigFile, []byte(cfg), 0o644); err != nil {
		t.Fatalf("write containerd config: %v", err)
	}
	c.proc = startProcess(t, c.LogFile, engineEnv(), bin, "--config", c.ConfigFile)
	c.PID = c.proc.cmd.Process.Pid
	t.Cleanup(func() { c.proc.stop(t, 15*time.Second) })
	c.proc.waitReady(t, "containerd", 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Ctr(ctx, "version")
		return err
	})
}

// Hosts points containerd's hosts.toml for registry at server, through
// mirror when it is not empty.
func (c *Containerd) Hosts(t testing.TB, registry, server, mirror string) {
	t.Helper()
	toml := fmt.Sprintf("server = %q\n", server)
	if mirror != "" {
		toml += fmt.Sprintf("\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror)
	}
	dir := filepath.Join(c.HostsDir, registry)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Log returns the end of containerd's log.
func (c *Containerd) Log() string { return c.proc.tail(16000) }

// Ctr runs ctr against this containerd, in its test namespace.
func (c *Containerd) Ctr(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, cmp.Or(c.ctr, "ctr"), append([]string{"--address", c.Socket, "--namespace", c.Namespace}, args...)...)
	cmd.Env = engineEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Pull runs `ctr images pull --hosts-dir <HostsDir>` with the native
// snapshotter (no overlay mounts needed).
func (c *Containerd) Pull(ctx context.Context, ref string) (string, error) {
	return c.Ctr(ctx, "images", "pull", "--hosts-dir", c.HostsDir, "--snapshotter", "native", ref)
}

// PodmanOptions configures NewPodman.
type PodmanOptions struct {
	// RegistriesConf is the content of the main registries.conf; default
	// a v2 file with docker.io as the only search registry.
	RegistriesConf string
}

// Podman runs Debian's podman as root with private storage (vfs), run
// root, tmpdir and HOME, and its own registries.conf.
type Podman struct {
	Dir            string
	Root, RunRoot  string
	Home           string
	RegistriesConf string
	// DropInDir is read by podman in addition to
	// /etc/containers/registries.conf.d (it is $HOME's per-user drop-in
	// directory); files here override those with the same prefix.
	DropInDir string
}

// NewPodman prepares private directories for podman; nothing runs until Run.
func NewPodman(t testing.TB, opts PodmanOptions) *Podman {
	t.Helper()
	requireRoot(t)
	RequireTool(t, "podman")
	dir := shortTempDir(t, "rcp")
	p := &Podman{
		Dir:            dir,
		Root:           filepath.Join(dir, "storage"),
		RunRoot:        filepath.Join(dir, "run"),
		Home:           filepath.Join(dir, "home"),
		RegistriesConf: filepath.Join(dir, "registries.conf"),
	}
	p.DropInDir = filepath.Join(p.Home, ".config", "containers", "registries.conf.d")
	if err := os.MkdirAll(p.DropInDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := opts.RegistriesConf
	if conf == "" {
		conf = "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n"
	}
	if err := os.WriteFile(p.RegistriesConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// podman leaves no daemon; reset storage so vfs layers are removed.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if out, err := p.Run(ctx, "system", "reset", "--force"); err != nil {
			t.Logf("podman system reset: %v\n%s", err, out)
		}
	})
	return p
}

// Run runs podman with the private directories and returns combined output.
func (p *Podman) Run(ctx context.Context, args ...string) (string, error) {
	base := []string{
		"--root", p.Root, "--runroot", p.RunRoot, "--storage-driver", "vfs",
		"--tmpdir", filepath.Join(p.Dir, "tmp"), "--events-backend", "file",
		"--cgroup-manager", "cgroupfs",
	}
	cmd := exec.CommandContext(ctx, "podman", append(base, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + p.Home,
		"CONTAINERS_REGISTRIES_CONF=" + p.RegistriesConf, "XDG_RUNTIME_DIR=" + filepath.Join(p.Dir, "xdg")}
	cmd.Env = append(cmd.Env, DeadProxyEnv()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
