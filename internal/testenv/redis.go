package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Redis is a running Debian redis-server on loopback, with no persistence
// and a private working directory.
type Redis struct {
	// Addr is 127.0.0.1:port.
	Addr string
	// Password is required of clients (requirepass).
	Password string
	// URL is redis://:password@127.0.0.1:port/0, the form cluster.redis takes.
	URL string
	// LogFile is the server's log.
	LogFile string
	p       *engineProc
}

// NewRedis starts redis-server on a free loopback port. It skips the test
// when redis-server is not installed (fails when CI=true); the server is
// killed at cleanup.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	bin := RequireTool(t, "redis-server")
	dir := t.TempDir()
	r := &Redis{Password: randomHex(12), LogFile: filepath.Join(dir, "redis.log")}
	r.Addr = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	r.URL = "redis://:" + r.Password + "@" + r.Addr + "/0"
	_, port, _ := net.SplitHostPort(r.Addr)
	r.p = &engineProc{t: t, name: "redis-server", logFile: r.LogFile,
		command: func() *exec.Cmd {
			return exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--dir", dir,
				"--save", "", "--appendonly", "no", "--requirepass", r.Password, "--protected-mode", "yes")
		},
		ready: r.ping}
	r.p.cleanup()
	r.p.Start()
	return r
}

// ping authenticates and sends PING over RESP.
func (r *Redis) ping(ctx context.Context) error {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	fmt.Fprintf(c, "AUTH %s\r\nPING\r\n", r.Password)
	br := bufio.NewReader(c)
	for range 2 {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+") {
			return fmt.Errorf("redis answered %q", strings.TrimSpace(line))
		}
	}
	return nil
}

// Stop kills the server (its data is gone: no persistence). Start runs it
// again on the same port.
func (r *Redis) Stop()  { r.p.Stop() }
func (r *Redis) Start() { r.p.Start() }

// PID is the server's process id.
func (r *Redis) PID() int { return r.p.PID() }
