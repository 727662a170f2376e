package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/clientconfig"
)

// stateSuffix names the file beside daemon.json that records what enable
// added, so disable can remove exactly that.
const stateSuffix = ".regcache-state"

type dockerOptions struct {
	commonOptions
	config   string
	pidfile  string
	host     string
	position string
	restart  bool
	force    bool
}

func newClientDockerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "docker",
		Short: "Configure dockerd's registry-mirrors in daemon.json",
		Long: `Add a mirror to dockerd's "registry-mirrors" (daemon.json), reload dockerd
without a restart, and check that it took effect.

dockerd uses registry-mirrors for Docker Hub images only. An http:// mirror is
also added to "insecure-registries" as host:port. The file keeps every other
key, its order and its indentation; a missing file is created (0644).

What enable added is recorded in <daemon.json>` + stateSuffix + `; disable removes
only that, so a mirror the operator had configured before stays. disable
empties the lists rather than deleting the keys: on SIGHUP dockerd applies
only the keys present in the file, and a deleted key would leave the old
mirror active until the next restart.

Reload: "systemctl reload docker" where systemd runs dockerd, else SIGHUP to
the PID in --pidfile. Running containers are not touched. --restart restarts
dockerd instead (through systemd), which stops running containers unless
live-restore is on. Then dockerd's API (--host) is asked which mirrors are
active. If dockerd is not running, the file is written and the change
applies when it starts.`,
	}
	cmd.AddCommand(newDockerEnableCmd(), newDockerDisableCmd(), newDockerStatusCmd())
	return cmd
}

func (o *dockerOptions) register(cmd *cobra.Command, mirrorRequired bool) {
	o.commonOptions.register(cmd, mirrorRequired)
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "/etc/docker/daemon.json", "dockerd's configuration file (default under --root)")
	f.StringVar(&o.pidfile, "pidfile", "/var/run/docker.pid", "dockerd's PID file, used when systemd does not run dockerd")
	f.StringVar(&o.host, "host", defaultDockerHost(), "dockerd API address used to verify (env DOCKER_HOST)")
}

// resolve applies --root to the paths the user did not set.
func (o *dockerOptions) resolve(cmd *cobra.Command) {
	o.config = o.path(cmd, "config", o.config, "/etc/docker/daemon.json")
	o.pidfile = o.path(cmd, "pidfile", o.pidfile, "/var/run/docker.pid")
}

func defaultDockerHost() string {
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		return h
	}
	return "unix:///var/run/docker.sock"
}

func newDockerEnableCmd() *cobra.Command {
	var o dockerOptions
	cmd := &cobra.Command{
		Use:   "enable --mirror URL",
		Short: "Add the mirror to daemon.json, reload dockerd and verify",
		Example: `  regcache client docker enable --mirror http://192.0.2.1:5000
  regcache client docker enable --mirror https://mirror.example.com --position last --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			return o.enable(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd, true)
	cmd.Flags().StringVar(&o.position, "position", "first", "where the mirror goes among existing mirrors: first or last")
	cmd.Flags().BoolVar(&o.restart, "restart", false, "restart dockerd (systemd) instead of reloading it")
	return cmd
}

func newDockerDisableCmd() *cobra.Command {
	var o dockerOptions
	cmd := &cobra.Command{
		Use:   "disable --mirror URL",
		Short: "Remove what enable added from daemon.json, reload dockerd and verify",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			o.noCheck = true // the mirror may be gone already
			return o.disable(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd, true)
	cmd.Flags().BoolVar(&o.restart, "restart", false, "restart dockerd (systemd) instead of reloading it")
	cmd.Flags().BoolVar(&o.force, "force", false, "remove the mirror even if regcache did not add it")
	return cmd
}

func newDockerStatusCmd() *cobra.Command {
	var o dockerOptions
	cmd := &cobra.Command{
		Use:   "status [--mirror URL]",
		Short: "Show configured and active mirrors; exit 0 only if all are configured, active and answering",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			return o.status(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd, false)
	return cmd
}

func (o *dockerOptions) enable(ctx context.Context, w io.Writer) error {
	pos, err := clientconfig.ParsePosition(o.position)
	if err != nil {
		return err
	}
	m, err := clientconfig.ParseMirror(o.mirror)
	if err != nil {
		return err
	}
	cfg, err := readChange(o.config)
	if err != nil {
		return err
	}
	var added clientconfig.DockerChange
	cfg.new, added, err = clientconfig.DockerEnable(cfg.old, clientconfig.DockerOptions{Mirror: m, Position: pos})
	if err != nil {
		return fmt.Errorf("%s: %w; nothing written", o.config, err)
	}
	state, st, err := o.readState()
	if err != nil {
		return err
	}
	state.new = st.Put(added).Bytes()
	if !added.AddedMirror {
		fmt.Fprintf(w, "%s already lists %s\n", o.config, m.URL)
	}
	if o.dryRun {
		cfg.show(w)
		fmt.Fprintf(w, "would %s and check that dockerd lists %s\n", o.describeReload(), m.URL)
		return nil
	}
	if _, err := o.parseMirror(ctx, w); err != nil {
		return err
	}
	if err := cfg.apply(w); err != nil {
		return err
	}
	if err := state.apply(io.Discard); err != nil {
		return err
	}
	return o.reloadAndVerify(ctx, w, m, true)
}

func (o *dockerOptions) disable(ctx context.Context, w io.Writer) error {
	m, err := clientconfig.ParseMirror(o.mirror)
	if err != nil {
		return err
	}
	cfg, err := readChange(o.config)
	if err != nil {
		return err
	}
	settings, err := clientconfig.DockerRead(cfg.old)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing written", o.config, err)
	}
	state, st, err := o.readState()
	if err != nil {
		return err
	}
	rec, ok := st.Get(m.URL)
	if o.force {
		rec = clientconfig.DockerChange{Mirror: m.URL, AddedMirror: true}
		if slices.Contains(settings.Insecure, m.Host) {
			rec.AddedInsecure = m.Host
		}
	} else if !ok || !rec.AddedMirror {
		listed := slices.ContainsFunc(settings.Mirrors, func(s string) bool { return strings.TrimRight(s, "/") == m.URL })
		if listed {
			fmt.Fprintf(w, "%s lists %s, but regcache did not add it (no record in %s); left in place, use --force to remove it\n", o.config, m.URL, state.path)
		}
	}
	rec.Mirror = m.URL
	cfg.new, err = clientconfig.DockerDisable(cfg.old, rec)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing written", o.config, err)
	}
	st = st.Delete(m.URL)
	if len(st.Changes) == 0 {
		state.remove = true
	} else {
		state.new = st.Bytes()
	}
	if o.dryRun {
		cfg.show(w)
		fmt.Fprintf(w, "would %s and check that dockerd no longer lists %s\n", o.describeReload(), m.URL)
		return nil
	}
	if err := cfg.apply(w); err != nil {
		return err
	}
	if err := state.apply(io.Discard); err != nil {
		return err
	}
	if !cfg.changed() && !rec.AddedMirror && !o.force {
		return nil
	}
	return o.reloadAndVerify(ctx, w, m, false)
}

func (o *dockerOptions) readState() (change, clientconfig.DockerState, error) {
	target, err := clientconfig.ResolvePath(o.config)
	if err != nil {
		return change{}, clientconfig.DockerState{}, err
	}
	c, err := readChange(target + stateSuffix)
	if err != nil {
		return c, clientconfig.DockerState{}, err
	}
	c.noBackup = true
	st, err := clientconfig.ParseDockerState(c.old)
	if err != nil {
		return c, st, fmt.Errorf("%s: %w", c.path, err)
	}
	return c, st, nil
}

// dockerd is how this node runs dockerd.
type dockerd struct {
	systemd bool
	pid     int // 0 when not running
}

// findDockerd decides how to signal dockerd: through systemd when systemd
// runs the docker unit, else by the PID in the pidfile.
func (o *dockerOptions) findDockerd(ctx context.Context) dockerd {
	if o.root == "/" || o.root == "" {
		if _, err := os.Stat("/run/systemd/system"); err == nil {
			if exec.CommandContext(ctx, "systemctl", "is-active", "--quiet", "docker.service").Run() == nil {
				return dockerd{systemd: true}
			}
		}
	}
	b, err := os.ReadFile(o.pidfile)
	if err != nil {
		return dockerd{}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return dockerd{}
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "dockerd") {
		return dockerd{} // stale pidfile
	}
	return dockerd{pid: pid}
}

func (o *dockerOptions) describeReload() string {
	if o.root != "/" && o.root != "" {
		return "not reload dockerd (--root is set)"
	}
	d := o.findDockerd(context.Background())
	switch {
	case d.systemd && o.restart:
		return "run 'systemctl restart docker'"
	case d.systemd:
		return "run 'systemctl reload docker' (SIGHUP)"
	case d.pid > 0 && o.restart:
		return fmt.Sprintf("fail: --restart needs systemd (dockerd PID %d is not run by systemd)", d.pid)
	case d.pid > 0:
		return fmt.Sprintf("send SIGHUP to dockerd (PID %d from %s)", d.pid, o.pidfile)
	}
	return "not reload: dockerd is not running (the change applies when it starts)"
}

// reloadAndVerify makes dockerd read daemon.json again and checks through its
// API that the mirror is (want=true) or is no longer (want=false) active.
func (o *dockerOptions) reloadAndVerify(ctx context.Context, w io.Writer, m clientconfig.Mirror, want bool) error {
	if o.root != "/" && o.root != "" {
		fmt.Fprintln(w, "--root is set: dockerd not reloaded")
		return nil
	}
	d := o.findDockerd(ctx)
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
	case d.pid > 0 && o.restart:
		return fmt.Errorf("--restart needs systemd; dockerd (PID %d) is not run by it: restart it yourself, the file is written", d.pid)
	case d.pid > 0:
		if err := syscall.Kill(d.pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("send SIGHUP to dockerd (PID %d): %w", d.pid, err)
		}
		fmt.Fprintf(w, "sent SIGHUP to dockerd (PID %d); running containers are not affected\n", d.pid)
	default:
		fmt.Fprintf(w, "dockerd is not running (no live PID in %s): the change applies when dockerd starts\n", o.pidfile)
		return nil
	}
	return o.verify(ctx, w, m, want)
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
		return fmt.Errorf("dockerd reports registry mirrors %q: %s is %s after the reload; check dockerd's log for a reload error (e.g. a flag that conflicts with daemon.json) and that dockerd reads %s", active, m.URL, state, o.config)
	}
	if want {
		fmt.Fprintf(w, "dockerd reports %s as an active registry mirror\n", m.URL)
	} else {
		fmt.Fprintf(w, "dockerd no longer uses %s\n", m.URL)
	}
	return nil
}

func (o *dockerOptions) status(ctx context.Context, w io.Writer) error {
	cfg, err := readChange(o.config)
	if err != nil {
		return err
	}
	settings, err := clientconfig.DockerRead(cfg.old)
	if err != nil {
		return fmt.Errorf("%s: %w", o.config, err)
	}
	_, st, err := o.readState()
	if err != nil {
		return err
	}
	want := settings.Mirrors
	if o.mirror != "" {
		m, err := clientconfig.ParseMirror(o.mirror)
		if err != nil {
			return err
		}
		want = []string{m.URL}
	}
	active, apiErr := dockerMirrors(ctx, o.host)
	fmt.Fprintf(w, "config %s: registry-mirrors %q, insecure-registries %q\n", o.config, settings.Mirrors, settings.Insecure)
	if apiErr != nil {
		fmt.Fprintf(w, "dockerd at %s: not reachable: %v\n", o.host, apiErr)
	} else {
		fmt.Fprintf(w, "dockerd at %s: active mirrors %q\n", o.host, active)
	}
	ok := len(want) > 0 && apiErr == nil
	if len(want) == 0 {
		fmt.Fprintln(w, "no mirror configured")
	}
	for _, raw := range want {
		line, good := dockerMirrorStatus(ctx, raw, settings, active, st, o.timeout)
		ok = ok && good
		fmt.Fprintln(w, line)
	}
	if !ok {
		return errNotActive
	}
	return nil
}

func dockerMirrorStatus(ctx context.Context, raw string, s clientconfig.DockerSettings, active []string, st clientconfig.DockerState, timeout time.Duration) (string, bool) {
	m, err := clientconfig.ParseMirror(raw)
	if err != nil {
		return fmt.Sprintf("mirror %s: %v", raw, err), false
	}
	configured := hasMirror(s.Mirrors, m.URL)
	isActive := hasMirror(active, m.URL)
	_, ours := st.Get(m.URL)
	answer := "answering"
	if err := probeMirror(ctx, m, timeout); err != nil {
		answer = "not answering: " + err.Error()
	}
	by := "operator"
	if ours {
		by = "regcache"
	}
	line := fmt.Sprintf("mirror %s: configured=%v (by %s) active=%v %s", m.URL, configured, by, isActive, answer)
	return line, configured && isActive && answer == "answering"
}

func hasMirror(list []string, u string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(strings.TrimRight(s, "/"), u) })
}

// dockerMirrors asks dockerd's API (GET /info) for its active registry
// mirrors.
func dockerMirrors(ctx context.Context, host string) ([]string, error) {
	client, base, err := dockerClient(host)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/info", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /info: %s", resp.Status)
	}
	var info struct {
		RegistryConfig struct{ Mirrors []string }
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&info); err != nil {
		return nil, fmt.Errorf("decode /info: %w", err)
	}
	return info.RegistryConfig.Mirrors, nil
}

// dockerClient returns an HTTP client and base URL for a DOCKER_HOST value
// (unix:// or tcp://).
func dockerClient(host string) (*http.Client, string, error) {
	u, err := url.Parse(host)
	if err != nil {
		return nil, "", fmt.Errorf("docker host %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		sock := u.Path
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		if _, err := os.Stat(sock); errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("docker socket %s does not exist", sock)
		}
		return &http.Client{Transport: tr}, "http://docker", nil
	case "tcp", "http":
		return &http.Client{}, "http://" + u.Host, nil
	}
	return nil, "", fmt.Errorf("docker host %q: only unix:// and tcp:// are supported", host)
}
