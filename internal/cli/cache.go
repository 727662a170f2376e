package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/rules"
)

// cacheFlags are the flags every cache command shares.
type cacheFlags struct {
	admin string
}

func newCacheCmd() *cobra.Command {
	f := &cacheFlags{}
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List, verify, prune and remove cached content, on a running mirror or offline",
		Long: `Work on the cache: list what it holds, check every file against its digest,
shrink it, remove an image or a blob, show its totals.

On a running mirror the commands go through its admin listener (--admin,
or admin_addr of --config): the server does the work, with the same output.
On a stopped mirror they open its data directory (--data, or data of
--config) directly. With neither --admin nor a free data directory (one a
running server holds, or, without --data, one with no cache index, as
./data is on a host whose mirror runs in a container), they try the admin
address of the configuration (127.0.0.1:5001 by default) and say so.

Changes (rm, invalidate, prune, verify) are taken from loopback only, or with the admin
token when the server has one (--admin-token, REGCACHE_ADMIN_TOKEN).`,
		Example: `  regcache cache ls --config /etc/regcache/regcache.yaml
  regcache cache ls --upstream docker.io --repository library/alpine --sort size
  regcache cache stats --admin 127.0.0.1:5001
  regcache cache verify --data /var/lib/regcache
  regcache cache prune --to-size 50GiB --dry-run
  regcache cache rm alpine:3.20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	pf := cmd.PersistentFlags()
	pf.String("config", "", "the mirror's YAML configuration: its data and admin_addr (env REGCACHE_CONFIG)")
	pf.String("data", "", "cache directory, as the mirror's data setting (env REGCACHE_DATA, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY) (default ./data)")
	pf.StringVar(&f.admin, "admin", "", "a running mirror's admin listener, host:port or URL (e.g. 127.0.0.1:5001); the commands then run there")
	pf.String("admin-token", "", "the mirror's admin_token, for changes from another host (env REGCACHE_ADMIN_TOKEN)")
	cmd.AddCommand(newCacheLsCmd(f), newCacheVerifyCmd(f), newCachePruneCmd(f), newCacheRmCmd(f), newCacheInvalidateCmd(f), newCacheExportCmd(f), newCacheImportCmd(f), newCacheStatsCmd(f))
	return cmd
}

// openCache finds where the commands run: --admin; else the data
// directory; else, when a server holds it, that server's admin listener
// from the configuration.
func openCache(cmd *cobra.Command, f *cacheFlags) (cacheBackend, error) {
	cfg, err := config.Load(cacheConfigFlags(cmd), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if f.admin != "" {
		return newRemoteCache(f.admin, cfg.AdminToken)
	}
	c, err := cache.Open(cfg.Data, nil)
	if err == nil {
		rs, err := rules.Compile(cfg.Rules) // checked by Load
		if err != nil {
			c.Close()
			return nil, err
		}
		c.UseRules(rs)
		return c, nil
	}
	if !errors.Is(err, cache.ErrLocked) {
		return remoteForMissing(cmd, cfg, err)
	}
	if cfg.AdminAddr == "" {
		return nil, fmt.Errorf("%w; the configuration has no admin_addr to reach that server through: pass --admin HOST:PORT of its admin listener", err)
	}
	rc, rerr := newRemoteCache(cfg.AdminAddr, cfg.AdminToken)
	if rerr != nil {
		return nil, rerr
	}
	st, serr := rc.Stats(cmd.Context())
	if serr != nil {
		return nil, fmt.Errorf("%s is in use by a running regcache, and its admin listener is not at %s, the admin_addr of the configuration (%v): pass --admin HOST:PORT of that server, or stop it to work on the directory offline", cfg.Data, cfg.AdminAddr, serr)
	}
	if !sameDir(st.Data, cfg.Data) {
		where := st.Data
		if where == "" {
			where = "a directory it does not name to this caller"
		}
		return nil, fmt.Errorf("%s is in use by a running regcache, but the one at %s (admin_addr of the configuration) serves %s: pass --admin HOST:PORT of the server using %s", cfg.Data, cfg.AdminAddr, where, cfg.Data)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s is in use by a running regcache: asking it through its admin listener at %s (--admin)\n", cfg.Data, cfg.AdminAddr)
	return rc, nil
}

// cacheConfigFlags is the flag set config.Load reads for the cache
// commands: --config, --data and --admin-token (prune's --max-size and
// --max-age are its own, not storage settings).
func cacheConfigFlags(cmd *cobra.Command) *pflagSet {
	fs := newPflagSet()
	for _, name := range []string{"config", "data", "admin-token"} {
		if fl := cmd.Flags().Lookup(name); fl != nil {
			fs.AddFlag(fl)
		}
	}
	return fs
}

// remoteForMissing answers a data directory without a cache index (the
// default ./data on a host whose mirror runs in a container, say): when
// --data was not given and a running regcache answers at the admin_addr of
// the configuration (127.0.0.1:5001 by default), the commands run there,
// and stderr says so. Otherwise it returns err, with what it tried.
func remoteForMissing(cmd *cobra.Command, cfg config.Config, err error) (cacheBackend, error) {
	if _, serr := os.Stat(cache.IndexFile(cfg.Data)); !errors.Is(serr, iofs.ErrNotExist) || cmd.Flags().Changed("data") || cfg.AdminAddr == "" {
		return nil, err
	}
	rc, rerr := newRemoteCache(cfg.AdminAddr, cfg.AdminToken)
	if rerr != nil {
		return nil, err
	}
	st, serr := rc.Stats(cmd.Context())
	if serr != nil {
		return nil, fmt.Errorf("%w; and no regcache answers at %s, the admin_addr of the configuration: pass --admin HOST:PORT of a running mirror's admin listener", err, cfg.AdminAddr)
	}
	where := st.Data
	if where == "" {
		where = "a data directory it does not name to this caller"
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "no cache index at %s: asking the running regcache at %s (admin_addr; --admin), which serves %s\n", cfg.Data, cfg.AdminAddr, where)
	return rc, nil
}

func sameDir(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 != nil || err2 != nil {
		return false
	}
	aa, _ := filepath.Abs(ra)
	ab, _ := filepath.Abs(rb)
	return aa == ab
}

func newCacheLsCmd(f *cacheFlags) *cobra.Command {
	var opt cache.ListOptions
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List cached tags with their images' size and last use, or blobs with --blobs",
		Long: `List the tags the cache knows: upstream, repository, tag, the digest it
points to, the bytes its image holds in the store (manifests and the blobs
stored; a layer shared by two images counts in both), when it was last
pulled, when the digest was first fetched and when the upstream last
confirmed it. With --blobs, list the blobs instead with their size and last
access, least recently used (the first to be evicted) first. Both end with
the cache's totals.`,
		Example: `  regcache cache ls
  regcache cache ls --upstream docker.io --repository library/alpine
  regcache cache ls --sort last-use --json
  regcache cache ls --blobs --data /var/lib/regcache`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opt.Repository != "" && opt.Upstream == "docker.io" && !strings.Contains(opt.Repository, "/") {
				opt.Repository = "library/" + opt.Repository
			}
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			l, err := c.List(cmd.Context(), opt)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), l)
			}
			return printListing(cmd.OutOrStdout(), l, opt)
		},
	}
	cmd.Flags().StringVar(&opt.Upstream, "upstream", "", "only tags of this upstream (docker.io, ghcr.io, ...)")
	cmd.Flags().StringVar(&opt.Repository, "repository", "", "only tags of this repository (with --upstream), e.g. library/alpine")
	cmd.Flags().StringVar(&opt.Sort, "sort", "", "order: name (default), size (largest first) or last-use (least recently used first); blobs: last-use (default), size or name")
	cmd.Flags().BoolVar(&opt.Blobs, "blobs", false, "list blobs (digest, size, last access) instead of tags")
	cmd.Flags().BoolVar(&opt.Missing, "missing", false, "list what sealed upstreams were asked for and not contacted (a running mirror), instead of tags")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printListing(w io.Writer, l cache.Listing, opt cache.ListOptions) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if opt.Missing {
		fmt.Fprintln(tw, "UPSTREAM\tWOULD HAVE FETCHED\tMISSES\tLAST")
		for _, m := range l.Missing {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", m.Upstream, m.Op, m.Count, fmtTime(m.Last))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "%d distinct requests not sent to a sealed upstream\n", len(l.Missing))
		return err
	}
	if opt.Blobs {
		fmt.Fprintln(tw, "DIGEST\tSIZE\tLAST ACCESS\tCREATED")
		for _, b := range l.Blobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Digest, humanBytes(b.Size), fmtTime(b.LastAccess), fmtTime(b.Created))
		}
	} else {
		fmt.Fprintln(tw, "UPSTREAM\tREPOSITORY\tTAG\tDIGEST\tSIZE\tLAST USE\tFETCHED\tCHECKED\tRULE")
		for _, im := range l.Images {
			size := humanBytes(im.Size)
			switch {
			case !im.Stored:
				size = "- (manifest not stored)"
			case im.Missing > 0:
				size += fmt.Sprintf(" (%d blobs not stored)", im.Missing)
			}
			rule := im.Rule
			if rule == "" {
				rule = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", im.Upstream, im.Repository, im.Tag, im.Digest, size,
				fmtTime(im.LastUse), fmtTime(im.Fetched), fmtTime(im.Checked), rule)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	t := l.Totals
	tags := fmt.Sprintf("%d tags", t.Tags)
	if !opt.Blobs && (opt.Upstream != "" || opt.Repository != "") {
		tags = fmt.Sprintf("%d of %d tags", len(l.Images), t.Tags)
	}
	_, err := fmt.Fprintf(w, "%s; %d blobs, %s; %d manifests, %s\n", tags, t.Blobs, humanBytes(t.BlobBytes), t.Manifests, humanBytes(t.ManifestBytes))
	return err
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func newCacheVerifyCmd(f *cacheFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Hash every cached file; quarantine damaged ones and repair the index",
		Long: `Read every committed file of the cache and check it hashes to its digest,
with a progress bar on stderr. A file that does not (disk or filesystem
damage, a hand edit, a truncation) is moved to the quarantine directory
(<data>/quarantine) and dropped from the index, so the mirror fetches it
again on the next request instead of serving wrong bytes. Index entries
whose file is gone are dropped. Offline, files the index does not know
(committed just before a crash) are verified and adopted.

Each problem is printed by digest as it is found. The exit status is
non-zero if any file was damaged or lost; the cache is repaired either way.`,
		Example: `  regcache cache verify                      # the running mirror, or ./data
  regcache cache verify --data /var/lib/regcache
  regcache cache verify --admin 127.0.0.1:5001`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			w := cmd.OutOrStdout()
			bar := newProgressBar(cmd.ErrOrStderr(), "verifying")
			start := time.Now()
			r, err := c.Verify(cmd.Context(), func(ev cache.VerifyEvent) {
				if ev.Damaged != "" {
					bar.clear()
					fmt.Fprintf(w, "damaged: %s (%s) %s: quarantined and dropped; the next pull fetches it again\n", ev.Damaged, humanBytes(ev.Size), ev.Why)
				}
				bar.show(ev.Done, ev.Total, ev.Files)
			})
			bar.done()
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			for _, d := range r.Dropped {
				fmt.Fprintf(w, "missing: %s is indexed but its file is gone: entry dropped\n", d)
			}
			for _, d := range r.Adopted {
				fmt.Fprintf(w, "adopted: %s was on disk but not indexed: verified and indexed\n", d)
			}
			fmt.Fprintf(w, "verified %d files, %s, in %s: %d damaged (quarantined), %d index entries without a file (dropped), %d files adopted\n",
				r.Files, humanBytes(r.Bytes), time.Since(start).Round(time.Millisecond), len(r.Corrupt), len(r.Dropped), len(r.Adopted))
			if !r.OK() {
				names := make([]string, 0, len(r.Corrupt)+len(r.Dropped))
				for _, d := range append(slices.Clone(r.Corrupt), r.Dropped...) {
					names = append(names, d.String())
				}
				return fmt.Errorf("the cache was damaged (%d damaged files, %d lost: %s); it is repaired now, and the mirror fetches that content again on the next pull",
					len(r.Corrupt), len(r.Dropped), strings.Join(names, ", "))
			}
			return nil
		},
	}
}

func newCachePruneCmd(f *cacheFlags) *cobra.Command {
	var dryRun bool
	var toSize string
	var olderThan time.Duration
	cmd := &cobra.Command{
		Use:   "prune --to-size SIZE | --older-than DURATION [--dry-run]",
		Short: "Remove least recently used images down to a size or age",
		Long: `Remove images the way the server's eviction does, least recently used
first: every image not pulled for --older-than, then more until the cache
holds at most --to-size. An image is a manifest (an index with its platform
manifests) and the blobs it references; layers another kept image shares
stay. Each image removed (or, with --dry-run, that would be) is printed.

On a running mirror, the content of tags whose upstream is down is taken
last (it may be the only copy); offline, whether an upstream is reachable
is not known, so nothing is held back.`,
		Example: `  regcache cache prune --to-size 50GiB --dry-run
  regcache cache prune --older-than 720h
  regcache cache prune --data /var/lib/regcache --to-size 200GB --older-than 2160h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var req cache.PruneRequest
			if toSize != "" {
				if strings.HasSuffix(strings.TrimSpace(toSize), "%") {
					return errors.New("--to-size: give prune a size (e.g. 50GiB), not a percentage of the file system")
				}
				n, err := config.ParseSize(toSize)
				if err != nil || n <= 0 {
					return fmt.Errorf("--to-size %q: want a size such as 50GiB, 500MB or a byte count above 0", toSize)
				}
				req.ToSize = n
			}
			if olderThan < 0 {
				return errors.New("--older-than must not be negative")
			}
			req.OlderThan, req.DryRun = olderThan, dryRun
			if req.ToSize == 0 && req.OlderThan == 0 {
				return errors.New("say how far to prune: --to-size (e.g. 50GiB) and/or --older-than (e.g. 720h)")
			}
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Prune(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printPrune(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().StringVar(&toSize, "to-size", "", "keep at most this many bytes, e.g. 50GiB, 500MB or a byte count")
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "remove images not pulled for this long, e.g. 720h")
	cmd.Flags().StringVar(&toSize, "max-size", "", "the same as --to-size")
	cmd.Flags().DurationVar(&olderThan, "max-age", 0, "the same as --older-than")
	_ = cmd.Flags().MarkHidden("max-size")
	_ = cmd.Flags().MarkHidden("max-age")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed, remove nothing")
	return cmd
}

func printPrune(w io.Writer, res cache.PruneResult) error {
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	for _, im := range res.Images {
		what := "image " + im.Digest.String()
		if !im.Manifest {
			what = "blob " + im.Digest.String() + " (no manifest references it)"
		}
		if len(im.Tags) > 0 {
			what += " (" + strings.Join(im.Tags, ", ") + ")"
		}
		note := ""
		if im.Offline {
			note = "; it was the offline copy of a tag whose upstream is down"
		}
		fmt.Fprintf(w, "%s %s  %s  last use %s%s\n", verb, what, humanBytes(im.Bytes), fmtTime(im.LastUse), note)
	}
	t := res.Totals
	if res.DryRun {
		_, err := fmt.Fprintf(w, "%s %d images, %d files, %s; %s would be left\n",
			verb, len(res.Images), res.Files, humanBytes(res.Bytes), humanBytes(t.Bytes()-res.Bytes))
		return err
	}
	_, err := fmt.Fprintf(w, "%s %d images, %d files, %s; %s left (%d blobs, %d manifests)\n",
		verb, len(res.Images), res.Files, humanBytes(res.Bytes), humanBytes(t.Bytes()), t.Blobs, t.Manifests)
	return err
}

func newCacheRmCmd(f *cacheFlags) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rm IMAGE|DIGEST...",
		Short: "Remove a cached image by tag, or a blob or manifest by digest",
		Long: `Remove content.

An image (alpine:3.20, ghcr.io/owner/app:1) forgets that tag and deletes its
image: its manifests and the blobs no other image references (shared layers
stay). If another tag points to the same image, or the manifest belongs to
an index still cached, only the tag is forgotten. The next pull of the tag
asks the upstream again. A name without a registry matches the tag under
any upstream, with Docker Hub's library/ added to one-word names; if it
matches tags of several upstreams, name the registry.

A digest (sha256:...) deletes that blob or manifest file and its index
entries; the next pull that needs it fetches it again.`,
		Example: `  regcache cache rm alpine:3.20
  regcache cache rm ghcr.io/owner/app:1 --dry-run
  regcache cache rm sha256:4bcff63911fcb4448bd4fdacec207030997caf25e9bea4045fa6c8c44de311d1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("name a tag (alpine:3.20) or a digest (sha256:...) to remove; regcache cache ls lists them")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			req := cache.RemoveRequest{DryRun: dryRun}
			for _, a := range args {
				if strings.HasPrefix(a, "sha256:") || strings.HasPrefix(a, "sha512:") {
					d, err := oci.ParseDigest(a)
					if err != nil {
						return fmt.Errorf("invalid digest %q", a)
					}
					req.Targets = append(req.Targets, cache.RemoveTarget{Raw: a, Digest: d})
					continue
				}
				ref, err := oci.ParseImage(a)
				if err != nil {
					return err
				}
				t := cache.RemoveTarget{Raw: a, Digest: ref.Digest}
				if ref.Digest == "" {
					t.Registry, t.Repo, t.Tag = ref.Registry, ref.Repo, ref.Tag
				}
				req.Targets = append(req.Targets, t)
			}
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Remove(cmd.Context(), req)
			if err != nil {
				return err
			}
			return printRemove(cmd.OutOrStdout(), res)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed, remove nothing")
	return cmd
}

func newCacheInvalidateCmd(f *cacheFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "invalidate IMAGE[:TAG]...",
		Short: "Make the next pull of a tag, or of every tag of a repository, ask the upstream",
		Long: `Invalidate cached tags.

A tag (alpine:3.20, ghcr.io/owner/app:1) is marked as never checked, and a
running mirror drops it from memory, so its next pull asks the upstream
(a HEAD; the manifest is fetched again only if the tag moved), whatever
the freshness or an immutable rule says. A name without a tag
(ghcr.io/owner/app) does this for every cached tag of the repository.
Content stays: if the upstream cannot be reached, the tag is served from
the cache as before, and other tags and pulls by digest are not touched.
On a cluster, one call covers every replica: they share the index, and
each reads a tag from it again at least once a second.`,
		Example: `  regcache cache invalidate alpine:3.20
  regcache cache invalidate --admin http://mirror:5001 ghcr.io/owner/app`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("name a tag (alpine:3.20) or a repository (ghcr.io/owner/app) to invalidate; regcache cache ls lists them")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var req cache.InvalidateRequest
			for _, a := range args {
				ref, err := oci.ParseImage(a)
				if err != nil {
					return err
				}
				if ref.Digest != "" {
					return fmt.Errorf("%s: name a tag or a repository; content by digest never changes (cache rm deletes it)", a)
				}
				t := cache.RemoveTarget{Raw: a, Registry: ref.Registry, Repo: ref.Repo, Tag: ref.Tag}
				if last := a[strings.LastIndex(a, "/")+1:]; !strings.Contains(last, ":") {
					t.Tag = "" // no tag given: every tag of the repository
				}
				req.Targets = append(req.Targets, t)
			}
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := c.Invalidate(cmd.Context(), req)
			if err != nil {
				return err
			}
			for _, t := range res.Tags {
				fmt.Fprintf(cmd.OutOrStdout(), "invalidated %s: the next pull asks the upstream\n", t)
			}
			return nil
		},
	}
}

func newCacheExportCmd(f *cacheFlags) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "export --to FILE [IMAGE:TAG...]",
		Short: "Write cached images to a bundle (an OCI image layout tar) another mirror imports",
		Long: `Write a bundle: an OCI image layout in a tar file (what skopeo copy
oci-archive: reads), holding the named tags (every cached tag when none is
named) with the manifests and blobs they reach that the cache holds, each
under its digest. index.json names each tag as <upstream>/<repository>:<tag>.
A platform or layer never pulled is not in the cache, and not in the bundle.

The bundle is written to FILE.partial and renamed to FILE when complete, with
progress on stderr. An interrupted export leaves FILE.partial: the same
command again resumes it, keeping every whole entry that hashes to its name
and writing only the rest.`,
		Example: `  regcache cache export --to bundle.tar alpine:3.20 ghcr.io/owner/app:1
  regcache cache export --admin 127.0.0.1:5001 -o all.tar
  skopeo copy oci-archive:bundle.tar:docker.io/library/alpine:3.20 dir:/tmp/alpine`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("name the bundle to write with --to FILE")
			}
			var req cache.ExportRequest
			for _, a := range args {
				ref, err := oci.ParseImage(a)
				if err != nil {
					return err
				}
				req.Targets = append(req.Targets, cache.RemoveTarget{Raw: a, Registry: ref.Registry, Repo: ref.Repo, Tag: ref.Tag, Digest: ref.Digest})
			}
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			res, err := exportBundle(cmd, c, req, to)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(res.Tags) == 0 { // from a running mirror: the tar's size only
				fmt.Fprintf(out, "wrote %s (%s)\n", to, humanBytes(res.Bytes))
				return nil
			}
			fmt.Fprintf(out, "wrote %s: %d tags, %d files, %s", to, len(res.Tags), res.Files, humanBytes(res.Bytes))
			if res.Missing > 0 {
				fmt.Fprintf(out, "; %d referenced files not in the cache (never pulled) are not in it", res.Missing)
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&to, "to", "o", "", "the bundle file to write")
	return cmd
}

// exportBundle writes the bundle to to.partial, resuming what an
// interrupted export left there, and renames it to to when complete. The
// names are checked (a dry run, which also counts the bytes for the
// progress shown on stderr) before any file is made.
func exportBundle(cmd *cobra.Command, c cacheBackend, req cache.ExportRequest, to string) (cache.BundleResult, error) {
	stderr := cmd.ErrOrStderr()
	part := to + ".partial"
	var prev partialBundle
	if _, err := os.Stat(part); err == nil {
		if prev, err = scanPartial(part); err != nil {
			return cache.BundleResult{}, err
		}
		if prev.layout {
			fmt.Fprintf(stderr, "resuming %s: %d files (%s) already there, each checked against its digest\n", part, len(prev.files), humanBytes(prev.bytes))
		}
	}
	req.Resume, req.Skip = prev.layout, prev.files
	dry := req
	dry.DryRun = true
	plan, err := c.Export(cmd.Context(), io.Discard, dry)
	if err != nil {
		return plan, err
	}
	out, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return plan, err
	}
	defer out.Close()
	if err := out.Truncate(prev.end); err != nil {
		return plan, err
	}
	if _, err := out.Seek(prev.end, io.SeekStart); err != nil {
		return plan, err
	}
	bar := newProgressBar(stderr, "exporting")
	res, err := c.Export(cmd.Context(), &progressWriter{w: out, bar: bar, total: plan.Bytes}, req)
	bar.done()
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("%w; %s keeps what was written: run the same command again to resume", err, part)
	}
	if len(res.Tags) > 0 {
		res.Files, res.Bytes = res.Files+len(prev.files), res.Bytes+prev.bytes
	} else { // from a running mirror: the tar's size
		res.Bytes += prev.end
	}
	return res, os.Rename(part, to)
}

func newCacheImportCmd(f *cacheFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Load a bundle (an OCI image layout tar) into a mirror's cache, running or stopped",
		Long: `Load a bundle written by regcache cache export (or any OCI image layout tar
whose index.json names images as <upstream>/<repository>:<tag>) into a
running mirror (streamed to its admin listener, --admin) or the data
directory of a stopped one (made if it does not exist). Every file is checked against its
digest and size as it is written and committed only if it matches; files
already cached are skipped. The tags are recorded once the whole bundle
has been read and checked: a truncated or tampered bundle is refused,
naming the file, and nothing it brought is left behind. A mirror whose
upstream is sealed then serves what the bundle holds. Progress (the
bundle's bytes read) is shown on stderr.`,
		Example: `  regcache cache import --data /var/lib/regcache bundle.tar
  regcache cache import --admin 127.0.0.1:5001 bundle.tar`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			fi, err := in.Stat()
			if err != nil {
				return err
			}
			if f.admin == "" { // a mirror that never ran: its data directory is made
				cfg, err := config.Load(cacheConfigFlags(cmd), os.LookupEnv)
				if err != nil {
					return err
				}
				if err := cache.Init(cfg.Data); err != nil {
					return err
				}
			}
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			bar := newProgressBar(cmd.ErrOrStderr(), "importing")
			res, err := c.Import(cmd.Context(), &progressReader{r: in, bar: bar, total: fi.Size()})
			bar.done()
			if err != nil {
				return fmt.Errorf("%s refused: %w", args[0], err)
			}
			for _, t := range res.Tags {
				fmt.Fprintf(cmd.OutOrStdout(), "imported %s\n", t)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d tags; %d files written (%s), %d already cached", len(res.Tags), res.Files, humanBytes(res.Bytes), res.Skipped)
			if res.Missing > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "; %d referenced files are in neither the bundle nor the cache", res.Missing)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
}

func printRemove(w io.Writer, res cache.RemoveResult) error {
	for _, r := range res.Removed {
		switch {
		case r.Tag == "" && res.DryRun:
			fmt.Fprintf(w, "would delete %s (%s)\n", r.Digest, humanBytes(r.Bytes))
		case r.Tag == "":
			fmt.Fprintf(w, "deleted %s (%s)\n", r.Digest, humanBytes(r.Bytes))
		case r.KeptBy != "":
			verb := "forgot"
			if res.DryRun {
				verb = "would forget"
			}
			fmt.Fprintf(w, "%s %s (%s); its content stays: %s\n", verb, r.Tag, r.Digest, r.KeptBy)
		default:
			verb := "removed"
			if res.DryRun {
				verb = "would remove"
			}
			fmt.Fprintf(w, "%s %s (%s): %d files, %s\n", verb, r.Tag, r.Digest, r.Files, humanBytes(r.Bytes))
		}
	}
	return nil
}

func newCacheStatsCmd(f *cacheFlags) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show the cache's totals, its cap and the background scrub",
		Long: `Show what the cache holds (blobs, manifests, tags and their bytes, from the
index's running totals), storage.max_size and storage.max_age, and on a
running mirror the background scrub's progress and the damage it found.`,
		Example: `  regcache cache stats
  regcache cache stats --admin http://mirror:5001 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := openCache(cmd, f)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Stats(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), st)
			}
			return printStats(cmd.OutOrStdout(), st)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStats(w io.Writer, st cache.CacheStats) error {
	t := st.Totals
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "blobs\t%d\t%s\n", t.Blobs, humanBytes(t.BlobBytes))
	fmt.Fprintf(tw, "manifests\t%d\t%s\n", t.Manifests, humanBytes(t.ManifestBytes))
	fmt.Fprintf(tw, "tags\t%d\t\n", t.Tags)
	switch {
	case st.MaxSize > 0:
		fmt.Fprintf(tw, "total\t%s\tof %s (storage.max_size), %.0f%%\n", humanBytes(t.Bytes()), humanBytes(st.MaxSize), 100*float64(t.Bytes())/float64(st.MaxSize))
	case st.Running:
		fmt.Fprintf(tw, "total\t%s\tno storage.max_size\n", humanBytes(t.Bytes()))
	default:
		fmt.Fprintf(tw, "total\t%s\t\n", humanBytes(t.Bytes()))
	}
	if st.MaxAge > 0 {
		fmt.Fprintf(tw, "max_age\t%s\t\n", st.MaxAge)
	}
	if s := st.Scrub; s != nil {
		switch {
		case !s.Enabled:
			fmt.Fprintf(tw, "scrub\toff\t(storage.scrub_interval 0)\n")
		default:
			fmt.Fprintf(tw, "scrub\tpass %d\t%d blobs, %s re-hashed since %s; a pass every %s, at most %s/s\n",
				s.Pass, s.Checked, humanBytes(s.Bytes), fmtTime(s.PassStarted), s.Interval, humanBytes(s.Rate))
			if !s.LastPassEnd.IsZero() {
				fmt.Fprintf(tw, "\t\tlast pass ended %s\n", fmtTime(s.LastPassEnd))
			}
			if s.DamagedTotal > 0 {
				fmt.Fprintf(tw, "\t\tfound %d damaged (set aside, fetched again on demand)\n", s.DamagedTotal)
			}
		}
	}
	q := st.Quarantine
	if q == "" {
		q = "the quarantine directory"
	}
	fmt.Fprintf(tw, "quarantine\t%d files\tin %s\n", st.Quarantined, q)
	mode := "offline (data directory opened directly)"
	if st.Running {
		mode = "running (answered by its admin listener)"
	}
	fmt.Fprintf(tw, "mirror\t%s\t\n", mode)
	if err := tw.Flush(); err != nil {
		return err
	}
	if s := st.Scrub; s != nil {
		for _, d := range s.Damaged {
			fmt.Fprintf(w, "damaged (scrub): %s\n", d)
		}
	}
	return nil
}
