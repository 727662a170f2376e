package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/app"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/oci"
)

func newCacheCmd() *cobra.Command {
	var data string
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List, verify, prune and remove cached content, offline",
		Long: `Work on a cache directory (the mirror's data setting) directly: list what it
holds, check every file against its digest, shrink it, forget a tag or
delete a blob.

These commands need the directory to themselves: the index allows one
process at a time, so while regcache serve runs on the directory they stop
at once with an error saying so. Stop the server first, or leave the work
to it: it evicts by storage.max_size and storage.max_age on its own, and
regcache status shows its state.`,
		Example: `  regcache cache ls --data /var/lib/regcache
  regcache cache ls --blobs
  regcache cache verify
  regcache cache prune --max-size 50GiB --dry-run
  regcache cache rm alpine:3.20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&data, "data", defaultDataDir(), "cache directory, as the mirror's data setting (env REGCACHE_DATA, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY)")
	cmd.AddCommand(newCacheLsCmd(&data), newCacheVerifyCmd(&data), newCachePruneCmd(&data), newCacheRmCmd(&data))
	return cmd
}

// defaultDataDir follows the server's precedence for its data directory.
func defaultDataDir() string {
	for _, name := range []string{"REGCACHE_DATA", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"} {
		if v := os.Getenv(name); v != "" {
			return v
		}
	}
	return "./data"
}

func newCacheLsCmd(data *string) *cobra.Command {
	var blobs bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List cached tags, or blobs with --blobs",
		Long: `List the tags the cache knows: upstream, repository, tag, the digest it
points to, when that digest was first fetched and when the upstream last
confirmed it. With --blobs, list the blobs instead with their size and last
access, least recently used (the first to be evicted) first. Both end with
totals.`,
		Example: `  regcache cache ls
  regcache cache ls --blobs --data /var/lib/regcache`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.OpenCache(*data, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			w := cmd.OutOrStdout()
			ntags, err := countTags(c.Index())
			if err != nil {
				return err
			}
			nblobs, blobBytes, err := listBlobs(c.Index(), w, blobs)
			if err != nil {
				return err
			}
			if !blobs {
				if err := listTags(c.Index(), w); err != nil {
					return err
				}
			}
			files, fileBytes, err := c.Files(cmd.Context())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(w, "%d tags; %d blobs, %s; %d files on disk (blobs and manifests), %s\n",
				ntags, nblobs, humanBytes(blobBytes), files, humanBytes(fileBytes))
			return err
		},
	}
	cmd.Flags().BoolVar(&blobs, "blobs", false, "list blobs (digest, size, last access) instead of tags")
	return cmd
}

func countTags(ix *cacheindex.Index) (int, error) {
	n := 0
	err := ix.Tags(func(_, _, _ string, _ cacheindex.TagEntry) error { n++; return nil })
	return n, err
}

func listTags(ix *cacheindex.Index, w io.Writer) error {
	type row struct {
		ref app.TagRef
		e   cacheindex.TagEntry
	}
	var rows []row
	err := ix.Tags(func(up, repo, tag string, e cacheindex.TagEntry) error {
		rows = append(rows, row{app.TagRef{Upstream: up, Repository: repo, Tag: tag}, e})
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.ref.String(), b.ref.String()) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tREPOSITORY\tTAG\tDIGEST\tFETCHED\tCHECKED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ref.Upstream, r.ref.Repository, r.ref.Tag, r.e.Digest, fmtTime(r.e.Fetched), fmtTime(r.e.Checked))
	}
	return tw.Flush()
}

// listBlobs totals the blob entries and, when print is set, lists them
// least recently used first.
func listBlobs(ix *cacheindex.Index, w io.Writer, print bool) (int, int64, error) {
	type row struct {
		d digest.Digest
		e cacheindex.BlobEntry
	}
	var rows []row
	var total int64
	err := ix.Blobs(func(d digest.Digest, e cacheindex.BlobEntry) error {
		rows = append(rows, row{d, e})
		total += e.Size
		return nil
	})
	if err != nil || !print {
		return len(rows), total, err
	}
	slices.SortFunc(rows, func(a, b row) int { return a.e.LastAccess.Compare(b.e.LastAccess) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIGEST\tSIZE\tLAST ACCESS\tCREATED")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.d, humanBytes(r.e.Size), fmtTime(r.e.LastAccess), fmtTime(r.e.Created))
	}
	return len(rows), total, tw.Flush()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func newCacheVerifyCmd(data *string) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Hash every cached file; remove corrupt ones and repair the index",
		Long: `Read every committed file of the cache and check it hashes to its digest.
A file that does not (disk or filesystem damage, a hand edit) is removed with
its index entries, so the mirror fetches it again instead of serving wrong
bytes. Then the index is reconciled with the files as the server does at
start-up: entries whose file is gone are dropped, and files the index does
not know (committed just before a crash) are adopted.

Each problem is printed as it is found. The exit status is non-zero if any
file was corrupt or any index entry had lost its file; the cache is repaired
either way.`,
		Example: `  regcache cache verify --data /var/lib/regcache
  systemctl stop regcache && regcache cache verify; systemctl start regcache`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := app.OpenCache(*data, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			w := cmd.OutOrStdout()
			start := time.Now()
			r, err := c.Verify(cmd.Context(), func(d digest.Digest, size int64) {
				fmt.Fprintf(w, "corrupt: %s (%s) does not hash to its digest: removed\n", d, humanBytes(size))
			})
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			for _, d := range r.Dropped {
				fmt.Fprintf(w, "missing: %s is indexed but its file is gone: entry dropped\n", d)
			}
			for _, d := range r.Adopted {
				fmt.Fprintf(w, "adopted: %s was on disk but not indexed: verified and indexed\n", d)
			}
			fmt.Fprintf(w, "verified %d files, %s, in %s: %d corrupt (removed), %d index entries without a file (dropped), %d files adopted\n",
				r.Files, humanBytes(r.Bytes), time.Since(start).Round(time.Millisecond), len(r.Corrupt), len(r.Dropped), len(r.Adopted))
			if !r.OK() {
				return fmt.Errorf("the cache in %s was damaged (%d corrupt files, %d lost files); it is repaired now, and the mirror fetches that content again on the next pull", *data, len(r.Corrupt), len(r.Dropped))
			}
			return nil
		},
	}
}

func newCachePruneCmd(data *string) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune --max-size SIZE | --max-age DURATION [--dry-run]",
		Short: "Remove least recently used blobs down to a size or age",
		Long: `Remove blobs the way the server's eviction does: every blob not pulled for
--max-age, then least recently used blobs until the cache is within
--max-size. Each blob removed (or, with --dry-run, that would be) is
printed, oldest access first.

Unlike the running server, prune does not know whether an upstream is
reachable, so it does not hold back the content of tags whose upstream is
down: after a prune, such images come back only when the upstream does.
Manifests are small and are kept.`,
		Example: `  regcache cache prune --max-size 50GiB --dry-run
  regcache cache prune --max-age 720h
  regcache cache prune --data /var/lib/regcache --max-size 200GB --max-age 2160h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("max-size") && !cmd.Flags().Changed("max-age") {
				return errors.New("say how far to prune: --max-size (e.g. 50GiB) and/or --max-age (e.g. 720h)")
			}
			// The server's own parsing, so sizes and durations read the same.
			cfg, err := config.Load(cmd.Flags(), nil)
			if err != nil {
				return err
			}
			if cfg.Storage.MaxSizePercent > 0 {
				return errors.New("--max-size: give prune a size (e.g. 50GiB), not a percentage of the file system")
			}
			c, err := app.OpenCache(*data, nil)
			if err != nil {
				return err
			}
			defer c.Close()
			plan, err := c.PrunePlan(cfg.Storage.MaxSize, cfg.Storage.MaxAge, time.Now())
			if err != nil {
				return err
			}
			return prune(cmd, c, plan, dryRun)
		},
	}
	cmd.Flags().String("max-size", "", "keep at most this many blob bytes, e.g. 50GiB, 500MB or a byte count")
	cmd.Flags().Duration("max-age", 0, "remove blobs not pulled for this long, e.g. 720h")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed, remove nothing")
	return cmd
}

func prune(cmd *cobra.Command, c *app.Cache, plan []app.PruneItem, dryRun bool) error {
	w := cmd.OutOrStdout()
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	var n int
	var freed int64
	for _, it := range plan {
		if !dryRun {
			if _, _, err := c.DeleteBlob(cmd.Context(), it.Digest); err != nil {
				return fmt.Errorf("prune after %d blobs: %w", n, err)
			}
		}
		n++
		freed += it.Size
		fmt.Fprintf(w, "%s %s  %s  last access %s\n", verb, it.Digest, humanBytes(it.Size), fmtTime(it.LastAccess))
	}
	left, size, err := listBlobs(c.Index(), io.Discard, false)
	if err != nil {
		return err
	}
	if dryRun {
		left, size = left-n, size-freed
	}
	_, err = fmt.Fprintf(w, "%s %d blobs, %s; %d blobs, %s left\n", verb, n, humanBytes(freed), left, humanBytes(size))
	return err
}

func newCacheRmCmd(data *string) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "rm IMAGE|DIGEST...",
		Short: "Forget a cached tag, or delete a blob or manifest by digest",
		Long: `Forget tags or delete content.

An image (alpine:3.20, ghcr.io/owner/app:1) forgets that tag: the next pull
asks the upstream for it again, as for a tag never pulled. Its manifest and
blobs stay until pruned or evicted (other tags may share them). A name
without a registry matches the tag under any upstream, with Docker Hub's
library/ added to one-word names; if it matches tags of several upstreams,
name the registry.

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
			type target struct {
				digest digest.Digest
				image  oci.Image
			}
			var targets []target
			for _, a := range args {
				if strings.HasPrefix(a, "sha256:") || strings.HasPrefix(a, "sha512:") {
					d, err := oci.ParseDigest(a)
					if err != nil {
						return fmt.Errorf("invalid digest %q", a)
					}
					targets = append(targets, target{digest: d})
					continue
				}
				ref, err := oci.ParseImage(a)
				if err != nil {
					return err
				}
				if ref.Digest != "" {
					targets = append(targets, target{digest: ref.Digest})
					continue
				}
				targets = append(targets, target{image: ref})
			}
			c, err := app.OpenCache(*data, nil)
			if err != nil {
				return err
			}
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			w := cmd.OutOrStdout()
			var forget []app.TagRef
			for _, t := range targets {
				if t.digest != "" {
					if err := rmDigest(cmd, c, t.digest, dryRun); err != nil {
						return err
					}
					continue
				}
				refs, entries, err := matchTags(c.Index(), t.image)
				if err != nil {
					return err
				}
				for i, r := range refs {
					verb := "forgot"
					if dryRun {
						verb = "would forget"
					}
					fmt.Fprintf(w, "%s %s (%s); its content stays until pruned\n", verb, r, entries[i].Digest)
				}
				forget = append(forget, refs...)
			}
			if dryRun || len(forget) == 0 {
				return nil
			}
			// The tag bucket is written with the index closed.
			err = c.Close()
			c = nil
			if err != nil {
				return err
			}
			return app.ForgetTags(*data, forget)
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be removed, remove nothing")
	return cmd
}

func rmDigest(cmd *cobra.Command, c *app.Cache, d digest.Digest, dryRun bool) error {
	w := cmd.OutOrStdout()
	if dryRun {
		size, onDisk, err := c.Has(cmd.Context(), d)
		if err != nil {
			return err
		}
		if _, indexed, _ := c.Index().Blob(d); !onDisk && !indexed {
			return fmt.Errorf("%s is not in the cache (regcache cache ls --blobs lists blobs)", d)
		}
		fmt.Fprintf(w, "would delete %s (%s)\n", d, humanBytes(size))
		return nil
	}
	size, found, err := c.DeleteBlob(cmd.Context(), d)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%s is not in the cache (regcache cache ls --blobs lists blobs)", d)
	}
	fmt.Fprintf(w, "deleted %s (%s)\n", d, humanBytes(size))
	return nil
}

// matchTags finds the index's tags for an image as a user names it.
func matchTags(ix *cacheindex.Index, ref oci.Image) ([]app.TagRef, []cacheindex.TagEntry, error) {
	reg := ref.Registry // canonical: Docker Hub's aliases are docker.io
	var refs []app.TagRef
	var entries []cacheindex.TagEntry
	err := ix.Tags(func(up, repo, tag string, e cacheindex.TagEntry) error {
		if tag != ref.Tag || (reg != "" && up != reg) {
			return nil
		}
		if repo == ref.Repo || repo == oci.HubRepository(up, ref.Repo) {
			refs = append(refs, app.TagRef{Upstream: up, Repository: repo, Tag: tag})
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(refs) == 0 {
		return nil, nil, fmt.Errorf("no cached tag matches %s (regcache cache ls lists the tags)", ref.Raw)
	}
	if len(refs) > 1 {
		names := make([]string, len(refs))
		for i, r := range refs {
			names[i] = r.String()
		}
		return nil, nil, fmt.Errorf("%s matches %s: name the registry, e.g. %s", ref.Raw, strings.Join(names, ", "), refs[0].String())
	}
	return refs, entries, nil
}
