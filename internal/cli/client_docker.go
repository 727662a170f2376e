package cli

import (
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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/clientconfig"
	"github.com/regcache/regcache/internal/redact"
)

// stateSuffix names the file in daemon.json's side directory that records
// what enable added, so disable can remove exactly that;
// legacyStateSuffix is where it was before (beside daemon.json), read when
// the new one is missing until a run under the lock moves it.
const (
	stateSuffix       = clientconfig.SideDirSuffix + "/state"
	legacyStateSuffix = ".regcache-state"
)

type dockerOptions struct {
	commonOptions
	config   string
	pidfile  string
	host     string
	position string
	restart  bool
	force    bool
	canaryV  verifyOptions // status --verify

	// Test seams: procDir replaces /proc, kill replaces syscall.Kill, and
	// beforeWrite is called with each path just before it is written.
	procDir     string
	kill        func(pid int, sig syscall.Signal) error
	beforeWrite func(path string) error
}

func (o *dockerOptions) proc(pid int, name string) string {
	dir := o.procDir
	if dir == "" {
		dir = "/proc"
	}
	return filepath.Join(dir, strconv.Itoa(pid), name)
}

func (o *dockerOptions) signal(pid int, sig syscall.Signal) error {
	if o.kill != nil {
		return o.kill(pid, sig)
	}
	return syscall.Kill(pid, sig)
}

func (o *dockerOptions) write(w io.Writer, c change) error {
	if o.beforeWrite != nil && c.changed() {
		if err := o.beforeWrite(c.path); err != nil {
			return err
		}
	}
	return c.apply(w)
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
only that, so a mirror the operator had configured before stays; without
--mirror, disable takes the mirror recorded there. disable empties the lists
rather than deleting the keys, and says so: on SIGHUP dockerd applies only the
keys present in the file, and a deleted key would leave the old mirror active
until the next restart.

What enable adds is recorded before daemon.json is written, and disable drops
the record only after; disable exits non-zero when the mirror stays listed
because regcache did not add it (--force removes it anyway). Parallel runs
wait for each other (lock file <daemon.json>` + clientconfig.LockSuffix + `, removed at the end). enable refuses when
dockerd was started with --registry-mirror or --insecure-registry flags:
dockerd will not start with a setting both as a flag and in daemon.json.

Reload: "systemctl reload docker" where systemd runs dockerd, else SIGHUP to
the PID in --pidfile, else, when dockerd answers on --host, to the process
listening on that unix socket. When dockerd answers but none of these finds
it, nothing is written: pass --pidfile. Running containers are not touched.
--restart restarts dockerd instead (through systemd), which stops running
containers unless live-restore is on. Then dockerd's API (--host) is asked
which mirrors are active; if dockerd did not take the change, the previous
daemon.json and record are put back. If dockerd is not running, the file is
written and the change applies when it starts.`,
	}
	cmd.AddCommand(newDockerEnableCmd(), newDockerDisableCmd(), newDockerStatusCmd())
	return cmd
}

func (o *dockerOptions) register(cmd *cobra.Command, flags int) {
	o.commonOptions.register(cmd, flags)
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
	o.register(cmd, mirrorRequired|writes)
	cmd.Flags().StringVar(&o.position, "position", "first", "where the mirror goes among existing mirrors: first or last")
	cmd.Flags().BoolVar(&o.restart, "restart", false, "restart dockerd (systemd) instead of reloading it")
	return cmd
}

func newDockerDisableCmd() *cobra.Command {
	var o dockerOptions
	cmd := &cobra.Command{
		Use:   "disable [--mirror URL]",
		Short: "Remove what enable added from daemon.json, reload dockerd and verify",
		Example: `  regcache client docker disable
  regcache client docker disable --mirror 192.0.2.1:5000 --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.resolve(cmd)
			o.noCheck = true // the mirror may be gone already
			return o.disable(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.register(cmd, writes)
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
			err := o.status(cmd.Context(), cmd.OutOrStdout())
			return o.canaryV.after(cmd.Context(), cmd.OutOrStdout(), err, o.verifyMirror(), dockerCanary(o.host), o.timeout)
		},
	}
	o.register(cmd, 0) // read-only: no --dry-run, no --no-check
	o.canaryV.register(cmd)
	return cmd
}

func (o *dockerOptions) enable(ctx context.Context, w io.Writer) error {
	pos, err := clientconfig.ParsePosition(o.position)
	if err != nil {
		return err
	}
	m, err := parseMirrorFlag(o.mirror)
	if err != nil {
		return err
	}
	if !o.dryRun {
		unlock, err := lockFiles(o.config)
		if err != nil {
			return err
		}
		defer unlock()
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
	state = state.keep()
	if added.AddedMirror || added.AddedInsecure != "" {
		// Only what this run adds is regcache's: an entry the operator had
		// stays the operator's.
		state.new, state.remove = st.Put(added).Bytes(), false
	}
	if !added.AddedMirror {
		fmt.Fprintf(w, "%s already lists %s\n", o.config, m.URL)
	}
	if o.dryRun {
		cfg.show(w)
		fmt.Fprintln(w, o.describeReload(ctx, m, true))
		return nil
	}
	if _, err := o.parseMirror(ctx, w); err != nil {
		return err
	}
	d, err := o.findDockerd(ctx)
	if err != nil {
		return err
	}
	if cfg.changed() {
		if err := o.checkFlags(d, m); err != nil {
			return err
		}
	}
	// The intent goes first: after a crash between the two writes, the
	// state names a mirror daemon.json may lack (harmless), never the
	// other way round.
	if err := o.write(io.Discard, state); err != nil {
		return err
	}
	if err := o.write(w, cfg); err != nil {
		return err
	}
	return o.reloadAndVerify(ctx, w, d, m, true, []change{state, cfg})
}

func (o *dockerOptions) disable(ctx context.Context, w io.Writer) error {
	if o.mirror != "" {
		if _, err := parseMirrorFlag(o.mirror); err != nil {
			return err
		}
	}
	if !o.dryRun {
		unlock, err := lockFiles(o.config)
		if err != nil {
			return err
		}
		defer unlock()
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
	m, err := o.disableMirror(st, state.path)
	if err != nil {
		return err
	}
	rec, recorded := st.Get(m.URL)
	if o.force {
		rec = clientconfig.DockerChange{Mirror: m.URL, AddedMirror: true}
		if slices.Contains(settings.Insecure, m.Host) {
			rec.AddedInsecure = m.Host
		}
	}
	rec.Mirror = m.URL
	cfg.new, err = clientconfig.DockerDisable(cfg.old, rec)
	if err != nil {
		return fmt.Errorf("%s: %w; nothing written", o.config, err)
	}
	state = state.keep()
	if recorded {
		st = st.Delete(m.URL)
		state.new, state.remove = st.Bytes(), len(st.Changes) == 0
	}
	if !hasMirror(settings.Mirrors, m.URL) {
		fmt.Fprintf(w, "%s does not list %s: nothing to remove\n", o.config, m.URL)
	}
	// A mirror that stays listed is not a success: the node keeps using it.
	var left error
	if hasMirror(settings.Mirrors, m.URL) && !rec.AddedMirror {
		left = fmt.Errorf("%s still lists %s, which regcache did not add (no record in %s), so it was left in place; pass --force to remove it", o.config, m.URL, state.path)
	}
	if o.dryRun {
		cfg.show(w)
		fmt.Fprintln(w, o.describeReload(ctx, m, false))
		o.noteLeft(w, settings, cfg.new, true)
		return left
	}
	d, err := o.findDockerd(ctx)
	if err != nil {
		return err
	}
	// daemon.json first, the record last: after a crash between the two,
	// the record still tells the next disable what to remove.
	if err := o.write(w, cfg); err != nil {
		return err
	}
	if err := o.write(io.Discard, state); err != nil {
		return err
	}
	o.noteLeft(w, settings, cfg.new, false)
	switch {
	case !cfg.changed() && !o.force:
		return left
	case left != nil:
		// Only the insecure-registries entry went; the mirror stays active.
		if err := o.reloadAndVerify(ctx, w, d, m, true, nil); err != nil {
			return err
		}
		return left
	}
	return o.reloadAndVerify(ctx, w, d, m, false, []change{cfg, state})
}

func (o *dockerOptions) readState() (change, clientconfig.DockerState, error) {
	target, err := clientconfig.ResolvePath(o.config)
	if err != nil {
		return change{}, clientconfig.DockerState{}, err
	}
	if err := clientconfig.CheckSideFile(target + stateSuffix); err != nil {
		return change{}, clientconfig.DockerState{}, err
	}
	c, err := readChange(target + stateSuffix)
	if err != nil {
		return c, clientconfig.DockerState{}, err
	}
	if !c.exists { // a run under the lock moves a legacy state; until then, read it there
		if err := clientconfig.CheckSideFile(target + legacyStateSuffix); err != nil {
			return change{}, clientconfig.DockerState{}, err
		}
		legacy, err := readChange(target + legacyStateSuffix)
		if err != nil {
			return c, clientconfig.DockerState{}, err
		}
		c.old = legacy.old
	}
	c.noBackup, c.side = true, true
	st, err := clientconfig.ParseDockerState(c.old)
	if err != nil {
		return c, st, fmt.Errorf("%s: %w", c.path, err)
	}
	return c, st, nil
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
		m, err := parseMirrorFlag(o.mirror)
		if err != nil {
			return err
		}
		want = []string{m.URL}
	}
	active, apiErr := dockerMirrors(ctx, o.host)
	fmt.Fprintf(w, "config %s: registry-mirrors %q, insecure-registries %q\n", o.config, settings.Mirrors, settings.Insecure)
	var down error // dockerd is not running: the one thing to say
	if apiErr != nil && !o.rootSet() {
		if d, err := o.findDockerd(ctx); err == nil && !d.running() {
			down = notActive("dockerd is not running (no live PID in %s, nothing answers on %s): the mirrors in %s apply when it starts", o.pidfile, o.host, o.config)
		}
	}
	switch {
	case down != nil:
		fmt.Fprintln(w, down)
	case apiErr != nil:
		fmt.Fprintf(w, "dockerd at %s: not reachable: %v\n", o.host, apiErr)
	default:
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
	switch {
	case down != nil:
		return down
	case !ok:
		return errNotActive
	}
	return nil
}

// disableMirror is the mirror disable removes: --mirror, else the one
// mirror enable recorded in the state file at statePath.
func (o *dockerOptions) disableMirror(st clientconfig.DockerState, statePath string) (clientconfig.Mirror, error) {
	if o.mirror != "" {
		return parseMirrorFlag(o.mirror)
	}
	var recorded []string
	for _, c := range st.Changes {
		recorded = append(recorded, c.Mirror)
	}
	switch len(recorded) {
	case 1:
		return clientconfig.ParseMirror(recorded[0])
	case 0:
		return clientconfig.Mirror{}, fmt.Errorf("%s records no mirror that regcache enabled (no %s), so there is nothing of regcache's to disable; to remove a mirror anyway, name it: --mirror URL --force", o.config, statePath)
	}
	return clientconfig.Mirror{}, fmt.Errorf("%s records several mirrors regcache enabled (%s): name the one to disable with --mirror", statePath, strings.Join(recorded, ", "))
}

// noteLeft says what disable leaves in daemon.json on purpose: the lists
// it emptied rather than deleting (dockerd applies on SIGHUP only the keys
// present in the file), and the side directory regcache keeps.
func (o *dockerOptions) noteLeft(w io.Writer, before clientconfig.DockerSettings, newCfg []byte, dryRun bool) {
	after, err := clientconfig.DockerRead(newCfg)
	if err != nil {
		return
	}
	var emptied []string
	if len(before.Mirrors) > 0 && len(after.Mirrors) == 0 {
		emptied = append(emptied, `"registry-mirrors": []`)
	}
	if len(before.Insecure) > 0 && len(after.Insecure) == 0 {
		emptied = append(emptied, `"insecure-registries": []`)
	}
	verb := "left"
	if dryRun {
		verb = "would leave"
	}
	if len(emptied) > 0 {
		fmt.Fprintf(w, "%s %s in %s on purpose: on a reload (SIGHUP) dockerd applies only the keys present in the file, so deleting them would keep the old values active until dockerd restarts; after a restart they may be deleted by hand\n",
			verb, strings.Join(emptied, " and "), o.config)
	}
	if dryRun {
		return
	}
	target, err := clientconfig.ResolvePath(o.config)
	if err != nil {
		return
	}
	if fi, err := os.Stat(clientconfig.SideDir(target)); err == nil && fi.IsDir() {
		fmt.Fprintf(w, "kept %s: %s before regcache first changed it (orig) and before this run (backup)\n", clientconfig.SideDir(target), o.config)
	}
}

// notActive is a status failure with its own words; errors.Is(err,
// errNotActive) holds.
func notActive(format string, args ...any) error {
	return &statusError{msg: fmt.Sprintf(format, args...)}
}

type statusError struct{ msg string }

func (e *statusError) Error() string        { return e.msg }
func (e *statusError) Is(target error) bool { return target == errNotActive }

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
		return nil, "", fmt.Errorf("docker host %q is not a URL", redact.URL(host))
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

// verifyMirror is the mirror --verify derives the admin address from:
// --mirror, else daemon.json's first.
func (o *dockerOptions) verifyMirror() string {
	if o.mirror != "" {
		if m, err := parseMirrorFlag(o.mirror); err == nil {
			return m.URL
		}
	}
	if c, err := readChange(o.config); err == nil {
		if s, err := clientconfig.DockerRead(c.old); err == nil && len(s.Mirrors) > 0 {
			return s.Mirrors[0]
		}
	}
	return ""
}
