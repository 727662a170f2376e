package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// regcacheBinary returns $REGCACHE_BIN, or builds ./cmd/regcache into a
// temporary directory, so the mirror runs as its own process.
func regcacheBinary(b *testing.B) string {
	b.Helper()
	if p := os.Getenv("REGCACHE_BIN"); p != "" {
		return p
	}
	out := filepath.Join(b.TempDir(), "regcache")
	gobin, err := exec.LookPath("go")
	if err != nil {
		b.Fatalf("go not found to build regcache (or set REGCACHE_BIN): %v", err)
	}
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/regcache/regcache/cmd/regcache")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build regcache: %v\n%s", err, msg)
	}
	return out
}

// proc is a server subprocess of the benchmark.
type proc struct {
	name string
	pid  int
	url  string // http://127.0.0.1:port
	dir  string // its data or prefix directory
	log  string
}

// startProc runs cmd with its output in dir/<name>.log, kills it at
// cleanup (and with the benchmark binary), and waits until readyURL answers.
func startProc(b *testing.B, name string, cmd *exec.Cmd, dir, readyURL string) *proc {
	b.Helper()
	p := &proc{name: name, dir: dir, log: filepath.Join(dir, name+".log")}
	logf, err := os.Create(p.log)
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so nginx's workers go with their master.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		b.Fatalf("start %s: %v", name, err)
	}
	logf.Close()
	p.pid = cmd.Process.Pid
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		syscall.Kill(-p.pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		syscall.Kill(-p.pid, syscall.SIGKILL) // whatever of the group is left
		if b.Failed() {
			tail, _ := os.ReadFile(p.log)
			if len(tail) > 8192 {
				tail = tail[len(tail)-8192:]
			}
			b.Logf("%s log:\n%s", name, tail)
		}
	})
	testenv.WaitHTTP(b, readyURL, 20*time.Second)
	return p
}

// startRegcache runs `regcache serve` in front of upstream with env added
// to the benchmark's settings.
func startRegcache(b *testing.B, bin, name string, hub *testenv.Hub, user, pass string, env ...string) *proc {
	b.Helper()
	dir := b.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(cleanEnv(),
		"REGCACHE_ADDR="+addr,
		"REGCACHE_ADMIN_ADDR="+admin,
		"REGCACHE_DATA="+filepath.Join(dir, "data"),
		"REGCACHE_UPSTREAM_URL="+hub.URL,
		"REGCACHE_UPSTREAM_NAME=docker.io",
		"REGCACHE_USERNAME="+user,
		"REGCACHE_PASSWORD="+pass,
		"REGCACHE_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, env...)
	p := startProc(b, name, cmd, dir, "http://"+admin+"/readyz")
	p.url = "http://" + addr
	testenv.WaitHTTP(b, p.url+"/v2/", 10*time.Second)
	return p
}

// cleanEnv is the benchmark's environment without REGCACHE_* and
// REGISTRY_* variables, which would change the mirror's configuration.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REGCACHE_") || strings.HasPrefix(kv, "REGISTRY_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// startNginx serves root (a directory) at /files/ with sendfile, the way a
// static file server would serve a cached blob: the physical reference.
func startNginx(b *testing.B, root string) *proc { return startNginxWorkers(b, root, "auto") }

// startNginxWorkers is startNginx with worker_processes set to workers.
func startNginxWorkers(b *testing.B, root, workers string) *proc {
	b.Helper()
	bin := testenv.RequireTool(b, "nginx")
	prefix := b.TempDir()
	port := testenv.FreePort(b)
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`
worker_processes %[5]s;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log warn;
%[4]s
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server {
        listen 127.0.0.1:%[2]d;
        location /files/ { alias %[3]s/; }
    }
}
`, prefix, port, root, userDirective(), workers)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath)
	p := startProc(b, "nginx", cmd, prefix, fmt.Sprintf("http://127.0.0.1:%d/files/", port))
	p.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	return p
}

// userDirective keeps nginx's workers as the benchmark's user when it runs
// as root, so they can read files in private temporary directories.
func userDirective() string {
	if os.Geteuid() == 0 {
		return "user root;"
	}
	return ""
}

// peakRSS returns VmHWM of pid in bytes: the most resident memory the
// process has had since it started.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, err
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
