package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/clientconfig"
	"github.com/regcache/regcache/internal/fleet"
)

type podmanOptions struct {
	commonOptions
	config     string
	dir        string
	registries []string
	force      bool
	verify     verifyOptions // status --verify
	podman     string        // --verify: the podman command
}

func newClientPodmanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "podman",
		Short: "Configure podman, CRI-O, buildah and skopeo with a registries.conf.d drop-in",
		Long: `Write a drop-in file, ` + clientconfig.PodmanDropInName + `, under registries.conf.d with a
[[registry]] for each --registry and a [[registry.mirror]] for the mirror
(insecure = true for an http:// mirror). The operator's registries.conf and its
comments are never rewritten; disable removes the drop-in and its directory of
copies (only when it points at --mirror if that is given, unless --force).

podman keeps only the last [[registry]] table for a prefix, so enable refuses
when registries.conf or another drop-in already has a table for one of the
registries: the operator's settings there (blocked, insecure, its own mirrors)
would be dropped silently. Add the mirror to that table instead.

Docker Hub is mirrored at the mirror's root; another registry, such as
ghcr.io, under <mirror>/ghcr.io, which regcache routes by path prefix.
podman reads the files on every command; CRI-O needs a reload
(systemctl reload crio).`,
	}
	cmd.AddCommand(newPodmanSubCmd("enable"), newPodmanSubCmd("disable"), newPodmanSubCmd("status"))
	return cmd
}

func newPodmanSubCmd(action string) *cobra.Command {
	var o podmanOptions
	short := map[string]string{
		"enable":  "Write the registries.conf.d drop-in for the mirror",
		"disable": "Remove regcache's registries.conf.d drop-in",
		"status":  "Show the drop-in; exit 0 only if it is in place and the mirror answers",
	}[action]
	use := action + " [--mirror URL]"
	if action == "enable" {
		use = action + " --mirror URL [--registry docker.io ...]"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.config = o.path(cmd, "config", o.config, "/etc/containers/registries.conf")
			o.dir = o.path(cmd, "dir", o.dir, "/etc/containers/registries.conf.d")
			return o.run(cmd.Context(), cmd.OutOrStdout(), action)
		},
	}
	switch action {
	case "enable":
		o.register(cmd, mirrorRequired|writes)
	case "disable":
		o.register(cmd, writes) // the drop-in is regcache's: it names the mirror
	default:
		o.register(cmd, 0) // read-only: no --dry-run, no --no-check
		o.verify.register(cmd)
		cmd.Flags().StringVar(&o.podman, "podman", "podman", "--verify: the podman command")
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "/etc/containers/registries.conf", "the operator's registries.conf, checked for the v1 format (default under --root)")
	f.StringVar(&o.dir, "dir", "/etc/containers/registries.conf.d", "drop-in directory (default under --root)")
	f.StringSliceVar(&o.registries, "registry", []string{"docker.io"}, "registry to mirror (repeat or comma-separate)")
	if action == "disable" {
		f.BoolVar(&o.force, "force", false, "remove the drop-in even if it points at another mirror")
	}
	return cmd
}

func (o *podmanOptions) run(ctx context.Context, w io.Writer, action string) error {
	path := filepath.Join(o.dir, clientconfig.PodmanDropInName)
	if action != "status" && !o.dryRun {
		unlock, err := lockFiles(path)
		if err != nil {
			return err
		}
		defer unlock()
	}
	c, err := readChange(path)
	if err != nil {
		return err
	}
	c.noOrig = true // the drop-in is regcache's own file
	if c.exists && !clientconfig.PodmanOwned(c.old) {
		return fmt.Errorf("%s exists and was not written by regcache; move it away first", c.path)
	}
	switch action {
	case "status":
		err := o.status(ctx, w, c)
		return o.verify.after(ctx, w, err, o.verifyMirror(c), o.canary(), o.timeout)
	case "disable":
		if err := o.checkDisable(c); err != nil {
			return err
		}
		c.remove = true
		c.dropSide = true // regcache's own file: its backup goes with it
		o.noCheck = true
	default:
		for _, r := range o.registries {
			if err := clientconfig.ValidRegistry(r); err != nil {
				return err
			}
		}
		if main, exists, err := clientconfig.ReadFile(o.config); err != nil {
			return err
		} else if exists {
			if err := clientconfig.PodmanCheckMain(main); err != nil {
				return fmt.Errorf("%s: %w", o.config, err)
			}
		}
		m, err := parseMirrorFlag(o.mirror)
		if err != nil {
			return err
		}
		if err := o.checkConflicts(m); err != nil {
			return err
		}
		c.new = clientconfig.PodmanDropIn(clientconfig.PodmanOptions{Mirror: m, Registries: o.registries})
	}
	if o.dryRun {
		c.show(w)
		fmt.Fprintln(w, "would write the file above; podman reads it on its next command (CRI-O: systemctl reload crio)")
		return nil
	}
	if action == "enable" {
		if _, err := o.parseMirror(ctx, w); err != nil {
			return err
		}
	}
	if err := c.apply(w); err != nil {
		return err
	}
	if !c.changed() {
		fmt.Fprintf(w, "%s: unchanged\n", c.path)
	}
	return nil
}

// checkDisable refuses to remove a drop-in that points at another mirror
// than --mirror, unless --force.
func (o *podmanOptions) checkDisable(c change) error {
	if o.mirror == "" {
		return nil // the drop-in is regcache's, whichever mirror it names
	}
	m, err := parseMirrorFlag(o.mirror)
	if err != nil || !c.exists || o.force {
		return err
	}
	urls, err := clientconfig.PodmanMirrorURLs(c.old)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path, err)
	}
	if len(urls) > 0 && !slices.ContainsFunc(urls, func(u string) bool { return !strings.EqualFold(u, m.URL) }) {
		return nil
	}
	return fmt.Errorf("%s points at %s, not %s; left in place: pass that --mirror, or --force to remove it anyway", c.path, strings.Join(urls, ", "), m.URL)
}

// checkConflicts looks for a [[registry]] table with the prefix of one of
// --registry in registries.conf and in the other drop-ins. podman keeps only
// the last table for a prefix (containers-registries.conf.d(5)), so ours
// would silently replace the operator's (its blocked, insecure, location and
// mirrors), or a later drop-in would replace ours. Merging the two is not
// attempted: the operator's table may say things (blocked, a rewritten
// location) that a mirror must not override, so it is theirs to decide.
func (o *podmanOptions) checkConflicts(m clientconfig.Mirror) error {
	files := []string{o.config}
	entries, err := os.ReadDir(o.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", o.dir, err)
	}
	for _, e := range entries { // ReadDir sorts by name, the order podman reads them in
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") && e.Name() != clientconfig.PodmanDropInName {
			files = append(files, filepath.Join(o.dir, e.Name()))
		}
	}
	var found []string
	first := ""
	for _, f := range files {
		src, exists, err := clientconfig.ReadFile(f)
		if err != nil {
			return err
		}
		if !exists {
			continue
		}
		prefixes, err := clientconfig.PodmanPrefixes(src)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, p := range prefixes {
			if slices.Contains(o.registries, p) {
				found = append(found, fmt.Sprintf("%s has a [[registry]] for %q", f, p))
				if first == "" {
					first = p
				}
			}
		}
	}
	if len(found) == 0 {
		return nil
	}
	loc := m.Host
	if first != "docker.io" {
		loc += "/" + first
	}
	insecure := ""
	if m.Insecure {
		insecure = ", insecure = true"
	}
	return fmt.Errorf("%s: podman keeps only the last [[registry]] table for a prefix, so %s would replace that table and its settings (blocked, insecure, location, mirrors), or be replaced by it; add the mirror to that table yourself ([[registry.mirror]] location = %q%s) or remove the table, then run enable again; nothing written",
		strings.Join(found, "; "), clientconfig.PodmanDropInName, loc, insecure)
}

func (o *podmanOptions) status(ctx context.Context, w io.Writer, c change) error {
	if !c.exists {
		fmt.Fprintf(w, "%s: not present\n", c.path)
		return errNotActive
	}
	mirrors, err := clientconfig.PodmanMirrors(c.old)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path, err)
	}
	urls, err := clientconfig.PodmanMirrorURLs(c.old)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path, err)
	}
	fmt.Fprintf(w, "%s: %q\n", c.path, mirrors)
	ok := len(urls) > 0
	if o.mirror != "" {
		m, err := parseMirrorFlag(o.mirror)
		if err != nil {
			return err
		}
		if !slices.ContainsFunc(urls, func(u string) bool { return strings.EqualFold(u, m.URL) }) {
			fmt.Fprintf(w, "%s points at %s, not %s\n", c.path, strings.Join(urls, ", "), m.URL)
			ok = false
		}
	}
	for _, u := range urls { // probe what podman will use
		m, err := clientconfig.ParseMirror(u)
		if err == nil {
			err = probeMirror(ctx, m, o.timeout)
		}
		if err != nil {
			fmt.Fprintf(w, "mirror %s: not answering: %v\n", u, err)
			ok = false
			continue
		}
		fmt.Fprintf(w, "mirror %s: answering\n", u)
	}
	if !ok {
		return errNotActive
	}
	return nil
}

// verifyMirror is the mirror --verify derives the admin address from:
// --mirror, else the drop-in's first.
func (o *podmanOptions) verifyMirror(c change) string {
	if o.mirror != "" {
		if m, err := parseMirrorFlag(o.mirror); err == nil {
			return m.URL
		}
	}
	if urls, err := clientconfig.PodmanMirrorURLs(c.old); err == nil && c.exists && len(urls) > 0 {
		return urls[0]
	}
	return ""
}

// canary pulls and removes with podman, which reads registries.conf and
// its drop-ins as buildah, skopeo and CRI-O do.
func (o *podmanOptions) canary() canaryEngine {
	return commandCanary("podman", []string{fleet.ContainersImage, fleet.Podman, fleet.Buildah, fleet.CRIO},
		func(ref string) []string { return []string{o.podman, "pull", "--quiet", ref} },
		func(ref string) []string { return []string{o.podman, "rmi", ref} })
}
