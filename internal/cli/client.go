package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/clientconfig"
)

// errNotActive makes `status` exit non-zero after it printed its report.
var errNotActive = errors.New("mirror not configured or not active")

// backupSuffix names the copy of a file's previous content, origSuffix the
// copy of its content before regcache first changed it (never replaced;
// empty when there was no file). Both are in the file's one side
// directory, <file>.regcache/, with the state of the engines that have
// one.
const (
	backupSuffix = clientconfig.SideDirSuffix + "/backup"
	origSuffix   = clientconfig.SideDirSuffix + "/orig"
)

func newClientCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Point dockerd, containerd or podman at a mirror, and back",
		Long: `Configure this node's container engines to pull through a regcache mirror.

Every command is safe to run again and on every node of a fleet: files are
edited in place (other settings, order and comments kept) and written
atomically with their mode and owner. What regcache keeps about a file is in
one directory beside it, <file>` + clientconfig.SideDirSuffix + `/: the backup of the previous
content (backup), the content from before regcache first changed the file
(orig, never replaced; empty when there was no file) and, for dockerd, the
record of what enable added (state). Runs on the same file wait for each
other on a lock file (<file>` + clientconfig.LockSuffix + `), removed when the command ends.
"disable" removes exactly what "enable" added; a file regcache created, it
removes with its directory.

--mirror takes host:port (plain HTTP, as regcache serve listens by default)
or a URL (http://host[:port], https://host[:port]). disable finds the mirror
in what enable left when --mirror is not given.

  regcache client docker enable  --mirror http://192.0.2.1:5000
  regcache client docker status
  regcache client containerd enable --mirror http://192.0.2.1:5000 --registry docker.io --registry ghcr.io
  regcache client podman enable --mirror http://192.0.2.1:5000 --registry docker.io

Use --dry-run to see the diff and the action without changing anything, and
--root to work on a mounted image or a test directory instead of /.`,
	}
	cmd.AddCommand(newClientDockerCmd(), newClientContainerdCmd(), newClientPodmanCmd())
	return cmd
}

// commonOptions are the flags the enable/disable/status commands share.
type commonOptions struct {
	mirror  string
	dryRun  bool
	noCheck bool
	root    string
	timeout time.Duration
}

// Which of the common flags a command has.
const (
	mirrorRequired = 1 << iota // enable: --mirror must be given
	writes                     // enable, disable: --dry-run and --no-check
)

func (o *commonOptions) register(cmd *cobra.Command, flags int) {
	f := cmd.Flags()
	mirrorHelp := "the mirror: host:port (plain HTTP) or URL, http://host[:port] or https://host[:port]"
	if flags&mirrorRequired == 0 && flags&writes != 0 {
		mirrorHelp += " (default: the one enable configured)"
	}
	f.StringVar(&o.mirror, "mirror", "", mirrorHelp)
	if flags&writes != 0 {
		f.BoolVar(&o.dryRun, "dry-run", false, "print the diff of every file and the action, change nothing")
		f.BoolVar(&o.noCheck, "no-check", false, "do not ask the mirror's /v2/ endpoint before writing")
	}
	f.StringVar(&o.root, "root", "/", "directory the default paths are relative to (a mounted image, a test directory)")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the mirror and the engine to answer")
	if flags&mirrorRequired != 0 {
		_ = cmd.MarkFlagRequired("mirror")
	}
}

// path returns flag value p when the user set flag name, else def under --root.
func (o *commonOptions) path(cmd *cobra.Command, name, p, def string) string {
	if cmd.Flags().Changed(name) {
		return p
	}
	return filepath.Join(o.root, def)
}

// parseMirror validates --mirror and, unless --no-check or --dry-run, makes
// sure the mirror answers before anything is written.
func (o *commonOptions) parseMirror(ctx context.Context, w io.Writer) (clientconfig.Mirror, error) {
	m, err := parseMirrorFlag(o.mirror)
	if err != nil {
		return m, err
	}
	if o.noCheck || o.dryRun {
		return m, nil
	}
	if err := probeMirror(ctx, m, o.timeout); err != nil {
		if errors.Is(err, errPlainHTTP) { // --no-check would write a URL the engine cannot use
			return m, err
		}
		return m, fmt.Errorf("%w (use --no-check to configure it anyway)", err)
	}
	fmt.Fprintf(w, "mirror %s answers on /v2/\n", m.URL)
	return m, nil
}

// probeMirror asks the mirror's /v2/ endpoint (pingMirror) over the
// client commands' transport: the system's roots, as the engines use.
func probeMirror(ctx context.Context, m clientconfig.Mirror, timeout time.Duration) error {
	t, err := mirrorTransport("", false)
	if err != nil {
		return err
	}
	defer t.CloseIdleConnections()
	return pingMirror(ctx, t, m.URL, timeout)
}

// change is one file an engine command wants to write or remove.
type change struct {
	path   string // as given (may be a symlink)
	old    []byte
	exists bool
	new    []byte
	remove bool
	// noBackup skips the backup and original copies (for regcache's own
	// files and for restoring after a failure).
	noBackup bool
	// noOrig skips the original copy (for a file regcache owns).
	noOrig bool
	// side marks regcache's own file beside a configuration (its state):
	// it must be a regular file in that directory.
	side bool
	// dropSide removes the file's side directory with the file (a file
	// regcache created or owns, removed by disable).
	dropSide bool
}

func (c change) changed() bool {
	if c.remove {
		return c.exists
	}
	return !c.exists || string(c.old) != string(c.new)
}

// show prints the unified diff of c.
func (c change) show(w io.Writer) {
	if !c.changed() {
		fmt.Fprintf(w, "%s: unchanged\n", c.path)
		return
	}
	sep := "/"
	if filepath.IsAbs(c.path) {
		sep = ""
	}
	oldName, newName := "a"+sep+c.path, "b"+sep+c.path
	if !c.exists {
		oldName = "/dev/null"
	}
	newBytes := c.new
	if c.remove {
		newName, newBytes = "/dev/null", nil
	}
	fmt.Fprint(w, clientconfig.Diff(c.old, newBytes, clientconfig.DiffOptions{OldName: oldName, NewName: newName}))
}

// apply writes or removes the file, keeping a backup of the old content.
func (c change) apply(w io.Writer) error {
	if !c.changed() {
		return nil
	}
	opts := clientconfig.WriteOptions{BackupSuffix: backupSuffix, OrigSuffix: origSuffix, Side: c.side}
	if c.noOrig {
		opts.OrigSuffix = ""
	}
	if c.noBackup {
		opts = clientconfig.WriteOptions{Side: c.side}
	}
	if c.remove {
		if err := clientconfig.RemoveFile(c.path, opts); err != nil {
			return err
		}
		fmt.Fprintf(w, "removed %s\n", c.path)
		if c.dropSide {
			target, err := clientconfig.ResolvePath(c.path)
			if err != nil {
				return err
			}
			return clientconfig.RemoveSideDir(target)
		}
		return nil
	}
	if err := clientconfig.WriteFile(c.path, c.new, opts); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s\n", c.path)
	return nil
}

// keep makes c a change that leaves the file as it is.
func (c change) keep() change {
	c.new, c.remove = c.old, !c.exists
	return c
}

// undo returns the change that puts c's old content back, without backups.
func (c change) undo() change {
	u := change{path: c.path, new: c.old, remove: !c.exists, noBackup: true, side: c.side}
	u.old, u.exists = c.old, c.exists
	if c.changed() { // the file now holds what c wrote, or is gone
		u.old, u.exists = c.new, !c.remove
	}
	return u
}

// lockFiles takes regcache's lock beside each of paths (in a fixed order, so
// that two runs cannot wait for each other) and returns a function that
// releases them all.
func lockFiles(paths ...string) (unlock func(), err error) {
	var targets []string
	for _, p := range paths {
		t, err := clientconfig.ResolvePath(p)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	slices.Sort(targets)
	targets = slices.Compact(targets)
	var unlocks []func()
	unlock = func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	for _, t := range targets {
		u, err := clientconfig.Lock(t)
		if err != nil {
			unlock()
			return nil, err
		}
		unlocks = append(unlocks, u)
		if err := clientconfig.MoveLegacySideFiles(t); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}

// readChange reads the current content of path for a change.
func readChange(path string) (change, error) {
	target, err := clientconfig.ResolvePath(path)
	if err != nil {
		return change{}, err
	}
	old, exists, err := clientconfig.ReadFile(target)
	if err != nil {
		return change{}, err
	}
	return change{path: path, old: old, exists: exists}, nil
}
