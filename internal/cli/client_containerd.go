package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/clientconfig"
	"github.com/regcache/regcache/internal/fleet"
)

const defaultHostsDir = "/etc/containerd/certs.d"

type containerdOptions struct {
	commonOptions
	config     string
	hostsDir   string
	registries []string
	position   string
	verify     verifyOptions // status --verify
	ctr        string        // --verify: the ctr command, containerd's socket and namespace
	address    string
	namespace  string
}

func newClientContainerdCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "containerd",
		Short: "Configure containerd's registry hosts (certs.d/<registry>/hosts.toml)",
		Long: `Add the mirror as a [host] of <hosts-dir>/<registry>/hosts.toml for each
--registry, so containerd (CRI, ctr --hosts-dir, nerdctl) pulls through it and
falls back to the registry itself. containerd reads these files on every pull:
no restart is needed.

The hosts directory is containerd's registry config_path, read from --config;
when config_path is not set, the CRI plugin (kubelet, crictl) ignores the
directory, and this command explains how to set it (once, with a restart).
For a registry other than Docker Hub, containerd adds ?ns=<registry> to each
request, which regcache routes on.

Other host tables and comments in hosts.toml are kept; disable removes only
the table regcache wrote (it carries a marker comment), and a hosts.toml it
created, with its directory of copies (hosts.toml` + clientconfig.SideDirSuffix + `/). Without
--mirror, disable and status take the mirror of regcache's table.`,
	}
	cmd.AddCommand(newContainerdSubCmd("enable"), newContainerdSubCmd("disable"), newContainerdSubCmd("status"))
	return cmd
}

func newContainerdSubCmd(action string) *cobra.Command {
	var o containerdOptions
	short := map[string]string{
		"enable":  "Add the mirror to hosts.toml of each --registry",
		"disable": "Remove regcache's mirror entry from hosts.toml of each --registry",
		"status":  "Show whether each --registry uses the mirror; exit 0 only if all do and it answers",
	}[action]
	use := action + " [--mirror URL] [--registry docker.io ...]"
	if action == "enable" {
		use = action + " --mirror URL [--registry docker.io ...]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.config = o.path(cmd, "config", o.config, "/etc/containerd/config.toml")
			if err := o.resolveHostsDir(cmd, cmd.OutOrStdout()); err != nil {
				return err
			}
			return o.run(cmd.Context(), cmd.OutOrStdout(), action)
		},
	}
	switch action {
	case "enable":
		o.register(cmd, mirrorRequired|writes)
	case "disable":
		o.register(cmd, writes) // the mirror defaults to the one regcache wrote
	default:
		o.register(cmd, 0) // read-only: no --dry-run, no --no-check
		o.verify.register(cmd)
		f := cmd.Flags()
		f.StringVar(&o.ctr, "ctr", "ctr", "--verify: the ctr command")
		f.StringVar(&o.address, "address", "/run/containerd/containerd.sock", "--verify: containerd's socket")
		f.StringVar(&o.namespace, "namespace", "default", "--verify: the containerd namespace ctr pulls into")
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "/etc/containerd/config.toml", "containerd's configuration file, read for config_path (default under --root)")
	f.StringVar(&o.hostsDir, "hosts-dir", "", "registry hosts directory (default: config_path from --config, else "+defaultHostsDir+")")
	f.StringSliceVar(&o.registries, "registry", []string{"docker.io"}, "registry to mirror (repeat or comma-separate; _default for all)")
	if action == "enable" {
		f.StringVar(&o.position, "position", "first", "where the mirror goes among existing hosts: first or last")
	}
	return cmd
}

// resolveHostsDir picks the hosts directory and warns when containerd's CRI
// plugin would not read it.
func (o *containerdOptions) resolveHostsDir(cmd *cobra.Command, w io.Writer) error {
	cfg, exists, err := clientconfig.ReadFile(o.config)
	if err != nil {
		return err
	}
	configPath := ""
	if exists {
		if configPath, err = clientconfig.ContainerdConfigPath(cfg); err != nil {
			return fmt.Errorf("%s: %w", o.config, err)
		}
	}
	if !cmd.Flags().Changed("hosts-dir") {
		o.hostsDir = o.path(cmd, "hosts-dir", "", defaultHostsDir)
		if configPath != "" {
			o.hostsDir = o.path(cmd, "hosts-dir", "", configPath)
		}
	}
	switch {
	case configPath == "":
		fmt.Fprintf(w, `note: %s does not set the registry config_path, so containerd's CRI plugin
(kubelet, crictl) will not read %s. Set it once and restart containerd:
  version = 2
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "%s"
(containerd 2.x, version = 3: [plugins."io.containerd.cri.v1.images".registry]).
ctr needs --hosts-dir %s; nerdctl reads %s by default.
`, o.config, o.hostsDir, defaultHostsDir, o.hostsDir, defaultHostsDir)
	case cmd.Flags().Changed("hosts-dir") && configPath != o.hostsDir:
		fmt.Fprintf(w, "note: containerd's config_path is %s, not %s: the CRI plugin will not read these files\n", configPath, o.hostsDir)
	}
	return nil
}

func (o *containerdOptions) run(ctx context.Context, w io.Writer, action string) error {
	for _, r := range o.registries {
		if err := clientconfig.ValidRegistry(r); err != nil {
			return err
		}
	}
	switch action {
	case "enable":
		return o.enable(ctx, w)
	case "disable":
		return o.disable(w)
	default:
		err := o.status(ctx, w)
		mirror := ""
		if m, merr := o.ourMirror(); merr == nil {
			mirror = m.URL
		}
		return o.verify.after(ctx, w, err, mirror, o.canary(), o.timeout)
	}
}

// canary pulls and removes with ctr --hosts-dir, as containerd's CRI
// plugin and nerdctl pull with the same hosts directory.
func (o *containerdOptions) canary() canaryEngine {
	base := []string{o.ctr, "--address", o.address, "--namespace", o.namespace, "images"}
	return commandCanary("containerd", []string{fleet.Containerd},
		func(ref string) []string { return append(slices.Clone(base), "pull", "--hosts-dir", o.hostsDir, ref) },
		func(ref string) []string { return append(slices.Clone(base), "rm", ref) })
}

func (o *containerdOptions) enable(ctx context.Context, w io.Writer) error {
	pos, err := clientconfig.ParsePosition(o.position)
	if err != nil {
		return err
	}
	m, err := parseMirrorFlag(o.mirror)
	if err != nil {
		return err
	}
	unlock, err := o.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var changes []change
	for _, r := range o.registries {
		c, err := readChange(clientconfig.ContainerdHostsPath(o.hostsDir, r))
		if err != nil {
			return err
		}
		c.new, err = clientconfig.ContainerdEnable(c.old, clientconfig.ContainerdOptions{Mirror: m, Registry: r, Position: pos})
		if errors.Is(err, clientconfig.ErrForeignEntry) {
			fmt.Fprintf(w, "%s: already has a [host.%q] table regcache did not write; left as is\n", c.path, m.URL)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w; nothing written", c.path, err)
		}
		changes = append(changes, c)
	}
	return o.apply(ctx, w, changes, "no restart needed: containerd reads hosts.toml on every pull")
}

func (o *containerdOptions) disable(w io.Writer) error {
	if o.mirror != "" {
		if _, err := parseMirrorFlag(o.mirror); err != nil {
			return err
		}
	}
	unlock, err := o.lock()
	if err != nil {
		return err
	}
	defer unlock()
	m, err := o.ourMirror()
	if err != nil {
		return err
	}
	o.mirror = m.URL
	var changes []change
	for _, r := range o.registries {
		c, err := readChange(clientconfig.ContainerdHostsPath(o.hostsDir, r))
		if err != nil {
			return err
		}
		c.new, c.remove, err = clientconfig.ContainerdDisable(c.old, r, m)
		if errors.Is(err, clientconfig.ErrForeignEntry) {
			fmt.Fprintf(w, "%s: the [host.%q] table was not written by regcache; left as is\n", c.path, m.URL)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w; nothing written", c.path, err)
		}
		c.dropSide = c.remove // a file regcache created: its copies go with it
		changes = append(changes, c)
	}
	o.noCheck = true
	return o.apply(context.Background(), w, changes, "containerd stops using the mirror on the next pull")
}

// ourMirror is --mirror, else the one mirror of the host tables regcache
// wrote in the --registry files.
func (o *containerdOptions) ourMirror() (clientconfig.Mirror, error) {
	if o.mirror != "" {
		return parseMirrorFlag(o.mirror)
	}
	var found, files []string
	for _, r := range o.registries {
		p := clientconfig.ContainerdHostsPath(o.hostsDir, r)
		files = append(files, p)
		src, _, err := clientconfig.ReadFile(p)
		if err != nil {
			return clientconfig.Mirror{}, err
		}
		for _, u := range clientconfig.ContainerdOurMirrors(src) {
			if !slices.Contains(found, u) {
				found = append(found, u)
			}
		}
	}
	switch len(found) {
	case 1:
		return clientconfig.ParseMirror(found[0])
	case 0:
		return clientconfig.Mirror{}, fmt.Errorf("no host table written by regcache in %s: nothing to disable (name the registries with --registry, or the mirror with --mirror)", strings.Join(files, ", "))
	}
	return clientconfig.Mirror{}, fmt.Errorf("regcache wrote host tables for several mirrors (%s) in %s: name the one with --mirror", strings.Join(found, ", "), strings.Join(files, ", "))
}

// lock takes regcache's lock beside each hosts.toml, so that parallel runs
// do not lose each other's tables; --dry-run writes nothing and takes none.
func (o *containerdOptions) lock() (unlock func(), err error) {
	if o.dryRun {
		return func() {}, nil
	}
	var paths []string
	for _, r := range o.registries {
		paths = append(paths, clientconfig.ContainerdHostsPath(o.hostsDir, r))
	}
	return lockFiles(paths...)
}

func (o *containerdOptions) apply(ctx context.Context, w io.Writer, changes []change, done string) error {
	if o.dryRun {
		for _, c := range changes {
			c.show(w)
		}
		fmt.Fprintln(w, "would write the files above;", done)
		return nil
	}
	if _, err := o.parseMirror(ctx, w); err != nil {
		return err
	}
	for _, c := range changes {
		if err := c.apply(w); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, done)
	return nil
}

func (o *containerdOptions) status(ctx context.Context, w io.Writer) error {
	m, err := o.ourMirror()
	if err != nil {
		return notActive("%v", err)
	}
	ok := true
	for _, r := range o.registries {
		path := clientconfig.ContainerdHostsPath(o.hostsDir, r)
		src, exists, err := clientconfig.ReadFile(path)
		if err != nil {
			return err
		}
		present, ours := clientconfig.ContainerdHasMirror(src, m)
		fmt.Fprintf(w, "%s: exists=%v mirror configured=%v (by regcache: %v)\n", path, exists, present, ours)
		ok = ok && present
	}
	if err := probeMirror(ctx, m, o.timeout); err != nil {
		fmt.Fprintf(w, "mirror %s: not answering: %v\n", m.URL, err)
		ok = false
	} else {
		fmt.Fprintf(w, "mirror %s: answering\n", m.URL)
	}
	if !ok {
		return errNotActive
	}
	return nil
}
