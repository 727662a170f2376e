package cli

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/clientconfig"
)

type podmanOptions struct {
	commonOptions
	config     string
	dir        string
	registries []string
}

func newClientPodmanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "podman",
		Short: "Configure podman, CRI-O, buildah and skopeo with a registries.conf.d drop-in",
		Long: `Write a drop-in file, ` + clientconfig.PodmanDropInName + `, under registries.conf.d with a
[[registry]] for each --registry and a [[registry.mirror]] for the mirror
(insecure = true for an http:// mirror). The operator's registries.conf and its
comments are never rewritten; disable removes the drop-in.

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
	cmd := &cobra.Command{
		Use:   action + " --mirror URL [--registry docker.io ...]",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.config = o.path(cmd, "config", o.config, "/etc/containers/registries.conf")
			o.dir = o.path(cmd, "dir", o.dir, "/etc/containers/registries.conf.d")
			return o.run(cmd.Context(), cmd.OutOrStdout(), action)
		},
	}
	o.register(cmd, action != "status")
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "/etc/containers/registries.conf", "the operator's registries.conf, checked for the v1 format (default under --root)")
	f.StringVar(&o.dir, "dir", "/etc/containers/registries.conf.d", "drop-in directory (default under --root)")
	f.StringSliceVar(&o.registries, "registry", []string{"docker.io"}, "registry to mirror (repeat or comma-separate)")
	return cmd
}

func (o *podmanOptions) run(ctx context.Context, w io.Writer, action string) error {
	c, err := readChange(filepath.Join(o.dir, clientconfig.PodmanDropInName))
	if err != nil {
		return err
	}
	if c.exists && !clientconfig.PodmanOwned(c.old) {
		return fmt.Errorf("%s exists and was not written by regcache; move it away first", c.path)
	}
	switch action {
	case "status":
		return o.status(ctx, w, c)
	case "disable":
		c.remove = true
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
		m, err := clientconfig.ParseMirror(o.mirror)
		if err != nil {
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

func (o *podmanOptions) status(ctx context.Context, w io.Writer, c change) error {
	if !c.exists {
		fmt.Fprintf(w, "%s: not present\n", c.path)
		return errNotActive
	}
	mirrors, err := clientconfig.PodmanMirrors(c.old)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path, err)
	}
	fmt.Fprintf(w, "%s: %q\n", c.path, mirrors)
	if o.mirror == "" {
		return nil
	}
	m, err := clientconfig.ParseMirror(o.mirror)
	if err != nil {
		return err
	}
	if err := probeMirror(ctx, m, o.timeout); err != nil {
		fmt.Fprintf(w, "mirror %s: not answering: %v\n", m.URL, err)
		return errNotActive
	}
	fmt.Fprintf(w, "mirror %s: answering\n", m.URL)
	return nil
}
