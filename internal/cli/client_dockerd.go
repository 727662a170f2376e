package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/regcache/regcache/internal/clientconfig"
)

// errNotTaken means dockerd answered, but its active mirrors are not what
// the file now says: the reload failed or did not happen.
var errNotTaken = errors.New("dockerd did not take the change")

// dockerd is how this node runs dockerd.
type dockerd struct {
	systemd bool   // docker.service is active: reload through systemctl
	pid     int    // dockerd's PID, 0 when unknown or not running
	how     string // how pid was found, for messages
}

func (d dockerd) running() bool { return d.systemd || d.pid > 0 }

// rootSet reports whether --root points at another tree than this node's,
// so there is no dockerd to reload.
func (o *dockerOptions) rootSet() bool { return o.root != "/" && o.root != "" }

// findDockerd decides how to signal dockerd: through systemd when systemd
// runs docker.service, else by the PID in --pidfile, else, when the API
// answers on --host, by the PID of the unix socket's peer (SO_PEERCRED).
// It fails when dockerd answers but none of these finds it: saying "not
// running" then would leave the change unapplied while exiting 0.
func (o *dockerOptions) findDockerd(ctx context.Context) (dockerd, error) {
	if o.rootSet() {
		return dockerd{}, nil
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		if exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", "docker.service").Run() == nil {
			d := dockerd{systemd: true, how: "docker.service"}
			out, err := exec.CommandContext(ctx, "systemctl", "show", "--property=MainPID", "--value", "docker.service").Output()
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && pid > 0 {
				d.pid = pid
			}
			return d, nil
		}
	}
	if b, err := os.ReadFile(o.pidfile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && o.isDockerd(pid) {
			return dockerd{pid: pid, how: fmt.Sprintf("PID %d from %s", pid, o.pidfile)}, nil
		}
	}
	if _, err := dockerMirrors(ctx, o.host); err != nil {
		return dockerd{}, nil // nothing answers: not running
	}
	if pid, err := socketPeer(ctx, o.host); err == nil && o.isDockerd(pid) {
		return dockerd{pid: pid, how: fmt.Sprintf("PID %d, the peer of %s", pid, o.host)}, nil
	}
	return dockerd{}, fmt.Errorf("dockerd is running but cannot be signalled: it answers on %s, but docker.service is not active under systemd, %s names no running dockerd, and the socket's peer is not dockerd; pass --pidfile or reload it yourself (systemctl reload <unit>, or kill -HUP <pid>); nothing written", o.host, o.pidfile)
}

// isDockerd reports whether pid is a live process named dockerd (a stale
// pidfile may name another process, or a socket's peer may be systemd).
func (o *dockerOptions) isDockerd(pid int) bool {
	if pid <= 0 {
		return false
	}
	comm, err := os.ReadFile(o.proc(pid, "comm"))
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "dockerd")
}

// socketPeer returns the PID of the process that listens on a unix:// host,
// as the kernel recorded it for the connection (SO_PEERCRED).
func socketPeer(ctx context.Context, host string) (int, error) {
	u, err := url.Parse(host)
	if err != nil || u.Scheme != "unix" {
		return 0, fmt.Errorf("docker host %q is not a unix socket", host)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", u.Path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, fmt.Errorf("SO_PEERCRED on %s: %w", u.Path, credErr)
	}
	return int(cred.Pid), nil
}

// checkFlags refuses to add keys to daemon.json that dockerd also has as
// command-line flags: dockerd refuses to start when a setting is given both
// ways, so the next restart would fail.
func (o *dockerOptions) checkFlags(d dockerd, m clientconfig.Mirror) error {
	if d.pid <= 0 {
		return nil
	}
	b, err := os.ReadFile(o.proc(d.pid, "cmdline"))
	if err != nil {
		return fmt.Errorf("read dockerd's command line (%s) to check for conflicting flags: %w", d.how, err)
	}
	keys := map[string]string{"--registry-mirror": "registry-mirrors"}
	if m.Insecure {
		keys["--insecure-registry"] = "insecure-registries"
	}
	var flags, conflicts []string
	for _, arg := range strings.Split(strings.TrimRight(string(b), "\x00"), "\x00") {
		name, _, _ := strings.Cut(arg, "=")
		if key, ok := keys[name]; ok && !slices.Contains(flags, name) {
			flags, conflicts = append(flags, name), append(conflicts, key)
		}
	}
	if len(flags) == 0 {
		return nil
	}
	return fmt.Errorf("dockerd (%s) was started with %s; dockerd refuses to start when a setting is both a flag and in daemon.json, so adding %s to %s would keep it from starting next time; move the flags' values into %s and drop the flags from dockerd's command line (or add the mirror as another flag yourself); nothing written",
		d.how, strings.Join(flags, " and "), strings.Join(conflicts, " and "), o.config, o.config)
}

// describeReload is the sentence --dry-run ends with: how dockerd would be
// made to read the file, and the check that the mirror is (want) or is no
// longer listed.
func (o *dockerOptions) describeReload(ctx context.Context, m clientconfig.Mirror, want bool) string {
	check := "and check that dockerd lists " + m.URL
	if !want {
		check = "and check that dockerd no longer lists " + m.URL
	}
	if o.rootSet() {
		return "would not reload dockerd (--root is set)"
	}
	d, err := o.findDockerd(ctx)
	switch {
	case err != nil:
		return "would fail: " + err.Error()
	case d.systemd && o.restart:
		return "would run 'systemctl restart docker' " + check
	case d.systemd:
		return "would run 'systemctl reload docker' (SIGHUP) " + check
	case d.pid > 0 && o.restart:
		return fmt.Sprintf("would fail: --restart needs systemd (dockerd %s is not run by systemd)", d.how)
	case d.pid > 0:
		return fmt.Sprintf("would send SIGHUP to dockerd (%s) %s", d.how, check)
	}
	return fmt.Sprintf("would not reload dockerd: it is not running (no live PID in %s, nothing answers on %s); the change applies when it starts", o.pidfile, o.host)
}

// reloadAndVerify makes dockerd read daemon.json again and checks through
// its API that the mirror is (want=true) or is no longer (want=false)
// active. When the reload fails or dockerd answers without taking the
// change, the files in written (in the order they were written) get their
// previous content back, so the file matches what dockerd runs with and
// the next start does not fail on it.
func (o *dockerOptions) reloadAndVerify(ctx context.Context, w io.Writer, d dockerd, m clientconfig.Mirror, want bool, written []change) error {
	if o.rootSet() {
		fmt.Fprintln(w, "--root is set: dockerd not reloaded")
		return nil
	}
	if !d.running() {
		fmt.Fprintf(w, "dockerd is not running (no live PID in %s, nothing answers on %s): the change applies when dockerd starts\n", o.pidfile, o.host)
		return nil
	}
	err := o.reload(ctx, w, d)
	if err == nil {
		err = o.verify(ctx, w, m, want)
		if err == nil || !errors.Is(err, errNotTaken) {
			return err
		}
	}
	if len(written) == 0 {
		return err
	}
	for i := len(written) - 1; i >= 0; i-- {
		if rerr := o.write(io.Discard, written[i].undo()); rerr != nil {
			return fmt.Errorf("%w; restoring the previous %s failed too: %v", err, written[i].path, rerr)
		}
	}
	fmt.Fprintf(w, "restored the previous %s and regcache's record\n", o.config)
	if rerr := o.reload(ctx, io.Discard, d); rerr != nil {
		return fmt.Errorf("%w; the previous %s is restored, but reloading dockerd again failed: %v", err, o.config, rerr)
	}
	return fmt.Errorf("%w; the previous %s is restored", err, o.config)
}

// reload sends dockerd SIGHUP (through systemd when it runs dockerd), or
// restarts it under --restart.
func (o *dockerOptions) reload(ctx context.Context, w io.Writer, d dockerd) error {
	switch {
	case d.systemd:
		verb := "reload"
		if o.restart {
			verb = "restart"
		}
		if out, err := exec.CommandContext(ctx, "systemctl", verb, "docker.service").CombinedOutput(); err != nil {
			return fmt.Errorf("systemctl %s docker: %w: %s", verb, err, bytes.TrimSpace(out))
		}
		fmt.Fprintf(w, "ran systemctl %s docker\n", verb)
	case o.restart:
		return fmt.Errorf("--restart needs systemd; dockerd (%s) is not run by it: restart it yourself", d.how)
	default:
		if err := o.signal(d.pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("send SIGHUP to dockerd (%s): %w", d.how, err)
		}
		fmt.Fprintf(w, "sent SIGHUP to dockerd (%s); running containers are not affected\n", d.how)
	}
	return nil
}

func (o *dockerOptions) verify(ctx context.Context, w io.Writer, m clientconfig.Mirror, want bool) error {
	deadline := time.Now().Add(o.timeout)
	var active []string
	var err error
	for {
		active, err = dockerMirrors(ctx, o.host)
		if err == nil && hasMirror(active, m.URL) == want {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("cannot ask dockerd at %s whether the mirror is active: %w", o.host, err)
	}
	if hasMirror(active, m.URL) != want {
		state := "NOT active"
		if !want {
			state = "STILL active"
		}
		return fmt.Errorf("%w: dockerd reports registry mirrors %q: %s is %s after the reload; check dockerd's log for a reload error (e.g. a flag that conflicts with daemon.json) and that dockerd reads %s", errNotTaken, active, m.URL, state, o.config)
	}
	if want {
		fmt.Fprintf(w, "dockerd reports %s as an active registry mirror\n", m.URL)
	} else {
		fmt.Fprintf(w, "dockerd no longer uses %s\n", m.URL)
	}
	return nil
}
