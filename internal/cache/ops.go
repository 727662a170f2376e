package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
)

// The `regcache cache` commands do the same work on a stopped mirror's
// data directory (Cache) and on a running mirror through its admin
// listener: both call Ops, so the answers are the same, on any store and
// index (local disk and bbolt, S3 and Redis).

// ListOptions selects and orders what `cache ls` lists.
type ListOptions struct {
	Upstream   string `json:"upstream,omitempty"`
	Repository string `json:"repository,omitempty"` // needs Upstream
	// Sort is "name" (default), "size" (largest first) or "last-use"
	// (least recently used, the first to be evicted, first).
	Sort string `json:"sort,omitempty"`
	// Blobs lists blobs instead of tags.
	Blobs bool `json:"blobs,omitempty"`
	// Missing lists what sealed upstreams were asked for and did not
	// have (a running mirror only), instead of tags.
	Missing bool `json:"missing,omitempty"`
}

// Missed is a request a sealed upstream was not asked (`cache ls
// --missing`): what the mirror would have fetched, how often, when last.
type Missed struct {
	Upstream string    `json:"upstream"`
	Op       string    `json:"op"`
	Count    int64     `json:"count"`
	Last     time.Time `json:"last"`
}

// ImageEntry is one tag of `cache ls` with its image.
type ImageEntry struct {
	Upstream   string        `json:"upstream"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag"`
	Digest     digest.Digest `json:"digest"`
	MediaType  string        `json:"mediaType,omitempty"`
	// Size is the bytes stored for the image: its manifests and the blobs
	// they reference that the store holds (shared ones count in each
	// image holding them); Blobs counts those blobs, Missing the ones
	// referenced but not stored (never pulled, or evicted).
	Size    int64     `json:"size"`
	Blobs   int       `json:"blobs"`
	Missing int       `json:"missing"`
	LastUse time.Time `json:"lastUse,omitzero"`
	Fetched time.Time `json:"fetched,omitzero"`
	Checked time.Time `json:"checked,omitzero"`
	// Stored is false when the tag's manifest is not in the store (the
	// next pull fetches it).
	Stored bool `json:"stored"`
	// Rule is the rule that applies to the tag ("rules[2]
	// docker.io/library/*:*"), when the caller knows the rules.
	Rule string `json:"rule,omitempty"`
}

// BlobRow is one blob of `cache ls --blobs`.
type BlobRow struct {
	Digest     digest.Digest `json:"digest"`
	Size       int64         `json:"size"`
	LastAccess time.Time     `json:"lastAccess,omitzero"`
	Created    time.Time     `json:"created,omitzero"`
}

// Listing is what `cache ls` shows.
type Listing struct {
	Images []ImageEntry `json:"images,omitempty"`
	Blobs  []BlobRow    `json:"blobs,omitempty"`
	// Missing are the sealed upstreams' misses (ListOptions.Missing).
	Missing []Missed          `json:"missing,omitempty"`
	Totals  cacheindex.Totals `json:"totals"`
}

// RemoveTarget is one argument of `cache rm`: a digest, or a tag as a
// user names it (Registry "" matches any upstream; a one-word Repo also
// matches Docker Hub's library/ repository).
type RemoveTarget struct {
	Raw      string        `json:"raw"`
	Digest   digest.Digest `json:"digest,omitempty"`
	Registry string        `json:"registry,omitempty"`
	Repo     string        `json:"repo,omitempty"`
	Tag      string        `json:"tag,omitempty"`
}

// RemoveRequest is what `cache rm` asks.
type RemoveRequest struct {
	Targets []RemoveTarget `json:"targets"`
	DryRun  bool           `json:"dryRun,omitempty"`
}

// Removed is one thing `cache rm` removed (or would remove).
type Removed struct {
	// Tag is set for a tag forgotten ("" for a digest removed).
	Tag    string        `json:"tag,omitempty"`
	Digest digest.Digest `json:"digest"`
	// Files are the files deleted with it, Bytes their size. A tag's
	// image goes with it except what another image still references;
	// KeptBy says why its content stays, when it does.
	Files  int    `json:"files"`
	Bytes  int64  `json:"bytes"`
	KeptBy string `json:"keptBy,omitempty"`
}

// RemoveResult is what `cache rm` did.
type RemoveResult struct {
	Removed []Removed         `json:"removed"`
	Totals  cacheindex.Totals `json:"totals"`
	DryRun  bool              `json:"dryRun,omitempty"`
}

// PruneRequest is what `cache prune` asks.
type PruneRequest struct {
	ToSize    int64         `json:"toSize,omitempty"`    // bytes to keep at most; 0: no bound
	OlderThan time.Duration `json:"olderThan,omitempty"` // remove images unused this long; 0: off
	DryRun    bool          `json:"dryRun,omitempty"`
}

// PrunedImage is one image a prune removes.
type PrunedImage struct {
	Digest  digest.Digest `json:"digest"`
	Tags    []string      `json:"tags,omitempty"`
	Bytes   int64         `json:"bytes"`
	LastUse time.Time     `json:"lastUse,omitzero"`
	// Manifest is false for a blob no manifest references.
	Manifest bool `json:"manifest"`
	// Offline is set when the image was the offline copy of a tag whose
	// upstream is down (running mirror only): the size asked for won.
	Offline bool `json:"offline,omitempty"`
}

// PruneResult is what `cache prune` did.
type PruneResult struct {
	Images []PrunedImage     `json:"images"`
	Files  int               `json:"files"`
	Bytes  int64             `json:"bytes"`
	Totals cacheindex.Totals `json:"totals"`
	DryRun bool              `json:"dryRun,omitempty"`
}

// VerifyEvent is one line of a verification's progress: Done of Total
// bytes hashed, or a damaged file found.
type VerifyEvent struct {
	Done    int64         `json:"done"`
	Total   int64         `json:"total"`
	Files   int           `json:"files"`
	Damaged digest.Digest `json:"damaged,omitempty"`
	Size    int64         `json:"size,omitempty"`
	Why     string        `json:"why,omitempty"`
}

// CacheStats is what `cache stats` shows.
type CacheStats struct {
	Totals  cacheindex.Totals `json:"totals"`
	MaxSize int64             `json:"maxSize"` // 0: unlimited (or not known offline)
	MaxAge  time.Duration     `json:"maxAge"`
	// Running is set when a running mirror answered; Scrub is its
	// background scrub.
	Running bool         `json:"running"`
	Scrub   *ScrubStatus `json:"scrub,omitempty"`
	// Quarantined counts the files in the quarantine directory.
	Quarantined int    `json:"quarantined"`
	Quarantine  string `json:"quarantine,omitempty"`
	// Data is the mirror's data directory, absolute (for callers allowed
	// private views).
	Data string `json:"data,omitempty"`
}

// Ops is the work of the cache commands and of eviction on a store and
// its index: the one deletion path (index entries first, then files).
// A backend that can do more says so through the small interfaces below
// (running totals, batched deletions, releasing mapped pages, listing one
// repository, an image's plan); without them the index's scans do.
type Ops struct {
	store blobstore.Store
	index cacheindex.Backend
	OpsConfig
}

// OpsConfig is what a running server adds to Ops; all optional.
type OpsConfig struct {
	Log *slog.Logger
	Now func() time.Time
	// Forget drops content the server holds in memory.
	Forget func(...digest.Digest)
	// ForgetTag drops a tag the server holds in memory (cache
	// invalidate).
	ForgetTag func(upstream, repo, tag string)
	// Lock serialises changes with the server's eviction.
	Lock *sync.Mutex
	// Protected is the content of tags whose upstream is down (nil
	// offline, where that is not known).
	Protected func(ctx context.Context) (map[digest.Digest]bool, error)
	// Deleted is told of files deleted, so the server can run its
	// bookkeeping.
	Deleted func()
	// Totals, when set, are the index's totals (a shared index's count);
	// else the index's own, or a scan.
	Totals func() cacheindex.Totals
	// Rule names the rule that applies to a tag, "" for none (the
	// configuration's rules; nil when they are not known).
	Rule func(upstream, repo, tag string) string
	// Missing are the sealed upstreams' misses (nil offline, where they
	// are not known).
	Missing func() []Missed
	// Pinned are the manifests rules pin: a prune keeps their images, as
	// eviction does.
	Pinned func(ctx context.Context) (map[digest.Digest]bool, error)
}

// NewOps returns the cache operations on store and index.
func NewOps(store blobstore.Store, index cacheindex.Backend, cfg OpsConfig) *Ops {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Lock == nil {
		cfg.Lock = new(sync.Mutex)
	}
	return &Ops{store: store, index: index, OpsConfig: cfg}
}

// What an index may do beyond cacheindex.Backend (the bbolt index does).
type (
	totaler      interface{ Totals() cacheindex.Totals }
	pageReleaser interface{ ReleasePages() }
	batchDeleter interface {
		DeleteBlobs(ctx context.Context, ds []digest.Digest) (int64, error)
	}
	repoTagger interface {
		RepoTags(ctx context.Context, upstream, repo string, fn func(upstream, repo, tag string, e cacheindex.TagEntry) error) error
	}
	imagePlanner interface {
		ImagePlan(ctx context.Context, root digest.Digest) (cacheindex.Plan, bool, error)
	}
)

// totals are the index's totals, however it can give them.
func (o *Ops) totals(ctx context.Context) cacheindex.Totals {
	if o.Totals != nil {
		return o.Totals()
	}
	if t, ok := o.index.(totaler); ok {
		return t.Totals()
	}
	t, err := cacheindex.Count(ctx, o.index)
	if err != nil {
		o.Log.Warn("count the cache index", slog.Any("error", err))
	}
	return t
}

func (o *Ops) releasePages() {
	if r, ok := o.index.(pageReleaser); ok {
		r.ReleasePages()
	}
}

// deleteEntries drops the blob and manifest entries of ds; it returns the
// bytes they held.
func (o *Ops) deleteEntries(ctx context.Context, ds []digest.Digest) (int64, error) {
	if b, ok := o.index.(batchDeleter); ok {
		return b.DeleteBlobs(ctx, ds)
	}
	var size int64
	for _, d := range ds {
		if e, ok, err := o.index.Blob(ctx, d); err == nil && ok {
			size += e.Size
		} else if m, ok, err := o.index.Manifest(ctx, d); err == nil && ok {
			size += m.Size
		}
		if err := o.index.DeleteBlob(ctx, d); err != nil {
			return size, err
		}
	}
	return size, nil
}

// repoTags calls fn for the tags of upstream (all when "") and repo.
func (o *Ops) repoTags(ctx context.Context, upstream, repo string, fn func(upstream, repo, tag string, e cacheindex.TagEntry) error) error {
	if r, ok := o.index.(repoTagger); ok {
		return r.RepoTags(ctx, upstream, repo, fn)
	}
	type row struct {
		up, repo, tag string
		e             cacheindex.TagEntry
	}
	var rows []row
	seen := map[string]bool{}
	err := o.index.Tags(ctx, func(up, rp, tag string, e cacheindex.TagEntry) error {
		k := up + "\x00" + rp + "\x00" + tag
		if (upstream == "" || up == upstream) && (repo == "" || rp == repo) && !seen[k] {
			seen[k] = true
			rows = append(rows, row{up, rp, tag, e})
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(rows, func(a, b row) int {
		return strings.Compare(a.up+"\x00"+a.repo+"\x00"+a.tag, b.up+"\x00"+b.repo+"\x00"+b.tag)
	})
	for _, r := range rows {
		if err := fn(r.up, r.repo, r.tag, r.e); err != nil {
			return err
		}
	}
	return nil
}

func (o *Ops) imagePlan(ctx context.Context, root digest.Digest) (cacheindex.Plan, bool, error) {
	if p, ok := o.index.(imagePlanner); ok {
		return p.ImagePlan(ctx, root)
	}
	return cacheindex.ImagePlanOf(ctx, o.index, root)
}

// List answers `cache ls`.
func (o *Ops) List(ctx context.Context, opt ListOptions) (Listing, error) {
	if opt.Missing {
		if o.Missing == nil {
			return Listing{}, errors.New("only a running mirror knows what its sealed upstreams were asked for: pass --admin")
		}
		return Listing{Missing: o.Missing(), Totals: o.totals(ctx)}, nil
	}
	if err := o.index.Flush(ctx); err != nil { // last uses held in memory
		return Listing{}, err
	}
	// A listing reads entries all over the index file; the kernel maps
	// pages around each one read, so without this a few listings leave
	// hundreds of MiB of the file resident in the process (page cache all
	// the same, but counted in its RSS).
	defer o.releasePages()
	l := Listing{Totals: o.totals(ctx)}
	if opt.Repository != "" && opt.Upstream == "" {
		return l, errors.New("a repository filter needs its upstream too (--upstream docker.io --repository library/alpine)")
	}
	if opt.Blobs {
		err := o.index.Blobs(ctx, func(d digest.Digest, e cacheindex.BlobEntry) error {
			l.Blobs = append(l.Blobs, BlobRow{Digest: d, Size: e.Size, LastAccess: e.LastAccess, Created: e.Created})
			return nil
		})
		if err != nil {
			return l, err
		}
		switch opt.Sort {
		case "size":
			slices.SortStableFunc(l.Blobs, func(a, b BlobRow) int { return compareInt64(b.Size, a.Size) })
		case "name":
			slices.SortFunc(l.Blobs, func(a, b BlobRow) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
		default:
			slices.SortStableFunc(l.Blobs, func(a, b BlobRow) int { return a.LastAccess.Compare(b.LastAccess) })
		}
		return l, nil
	}
	// The tags first, then each image measured: a lookup inside RepoTags's
	// read transaction would open another while one is open, which waits
	// forever behind a commit that remaps the file.
	err := o.repoTags(ctx, opt.Upstream, opt.Repository, func(up, repo, tag string, e cacheindex.TagEntry) error {
		im := ImageEntry{Upstream: up, Repository: repo, Tag: tag, Digest: e.Digest, MediaType: e.MediaType, Fetched: e.Fetched, Checked: e.Checked}
		if o.Rule != nil {
			im.Rule = o.Rule(up, repo, tag)
		}
		l.Images = append(l.Images, im)
		return nil
	})
	if err != nil {
		return l, err
	}
	for i := range l.Images {
		if i%8 == 7 {
			// Each lookup maps the pages around the ones it reads (the
			// kernel's fault-around, 64 KiB): an image's dozen lookups
			// left 2 MiB of the file resident, a listing of 80 images
			// 190 MiB at its peak. Released every 8 images: 87 MiB
			// (process and file pages), for 10-20 ms more per listing.
			o.releasePages()
		}
		if err := o.measure(ctx, &l.Images[i]); err != nil {
			return l, err
		}
	}
	switch opt.Sort {
	case "size":
		slices.SortStableFunc(l.Images, func(a, b ImageEntry) int { return compareInt64(b.Size, a.Size) })
	case "last-use":
		slices.SortStableFunc(l.Images, func(a, b ImageEntry) int { return a.LastUse.Compare(b.LastUse) })
	case "", "name": // the index's order: upstream, repository, tag
	default:
		return l, fmt.Errorf("sort by name, size or last-use, not %q", opt.Sort)
	}
	return l, nil
}

// measure fills in an image's stored size and last use from the index.
func (o *Ops) measure(ctx context.Context, im *ImageEntry) error {
	seen := map[digest.Digest]bool{}
	stack := []digest.Digest{im.Digest}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[d] {
			continue
		}
		seen[d] = true
		if m, ok, err := o.index.Manifest(ctx, d); err != nil {
			return err
		} else if ok {
			if d == im.Digest {
				im.Stored = true
			}
			im.Size += m.Size
			if m.LastAccess.After(im.LastUse) {
				im.LastUse = m.LastAccess
			}
			stack = append(stack, m.Refs...)
			continue
		}
		if d == im.Digest {
			continue
		}
		b, ok, err := o.index.Blob(ctx, d)
		switch {
		case err != nil:
			return err
		case ok:
			im.Size += b.Size
			im.Blobs++
		default:
			im.Missing++
		}
	}
	return nil
}

// Remove answers `cache rm`: a digest deletes that file; a tag is
// forgotten and its image deleted but for what another image references.
func (o *Ops) Remove(ctx context.Context, req RemoveRequest) (RemoveResult, error) {
	o.Lock.Lock()
	defer o.Lock.Unlock()
	res := RemoveResult{DryRun: req.DryRun}
	for _, t := range req.Targets {
		if t.Digest != "" {
			r, err := o.removeDigest(ctx, t, req.DryRun)
			if err != nil {
				return res, err
			}
			res.Removed = append(res.Removed, r)
			continue
		}
		ref, e, err := o.matchTag(ctx, t)
		if err != nil {
			return res, err
		}
		r := Removed{Tag: ref.String(), Digest: e.Digest}
		if !req.DryRun {
			if err := o.index.DeleteTag(ctx, ref.Upstream, ref.Repository, ref.Tag); err != nil {
				return res, fmt.Errorf("forget tag %s: %w", ref, err)
			}
		}
		if other, err := o.otherTag(ctx, ref, e.Digest); err != nil {
			return res, err
		} else if other != "" {
			r.KeptBy = "tag " + other + " points to the same image"
			res.Removed = append(res.Removed, r)
			continue
		}
		plan, top, err := o.imagePlan(ctx, e.Digest)
		if err != nil {
			return res, err
		}
		if !top {
			r.KeptBy = "an index stored in the cache references it"
			if _, ok, _ := o.index.Manifest(ctx, e.Digest); !ok {
				r.KeptBy = "its manifest is not stored"
			}
		}
		r.Files, r.Bytes = len(plan.Evict), sumBytes(plan.Images)
		if !req.DryRun {
			if _, _, err := o.Delete(ctx, plan.Evict); err != nil {
				return res, err
			}
		}
		res.Removed = append(res.Removed, r)
	}
	res.Totals = o.totals(ctx)
	return res, nil
}

func sumBytes(imgs []cacheindex.EvictedImage) int64 {
	var n int64
	for _, im := range imgs {
		n += im.Bytes
	}
	return n
}

func (o *Ops) removeDigest(ctx context.Context, t RemoveTarget, dryRun bool) (Removed, error) {
	d := t.Digest
	size, err := o.store.Stat(ctx, d)
	onDisk := err == nil
	if err != nil && !errors.Is(err, blobstore.ErrNotFound) {
		return Removed{}, err
	}
	_, inBlobs, err := o.index.Blob(ctx, d)
	if err != nil {
		return Removed{}, err
	}
	_, inManifests, err := o.index.Manifest(ctx, d)
	if err != nil {
		return Removed{}, err
	}
	if !onDisk && !inBlobs && !inManifests {
		return Removed{}, fmt.Errorf("%s is not in the cache (regcache cache ls --blobs lists blobs)", d)
	}
	r := Removed{Digest: d, Files: 1, Bytes: size}
	if dryRun {
		return r, nil
	}
	if _, _, err := o.Delete(ctx, []digest.Digest{d}); err != nil {
		return Removed{}, err
	}
	return r, nil
}

// Delete deletes files and their index entries (eviction, rm, prune), in batches of one
// transaction each. bbolt copies every page a transaction changes, and an
// eviction's digests are spread over the whole index: batches cut from the
// plan's order would each rewrite most of the blob entries' pages. So the
// digests are sorted first and cut into runs of adjacent keys: each batch
// rewrites only the pages of its own key range, every page is rewritten
// about once per pass, and a transaction's copies of pages (held in memory
// until it commits) are a batch's worth, not the whole pass's: 350 MiB
// in one transaction over a million blobs, against the 150 MiB the server
// is to stay under. Afterwards the index pages the work read are released
// and, after a large pass, the memory it took is returned to the system. The entries go first:
// a request between the two finds the file and serves it, and one after
// both fetches the blob again and indexes the new file (files first, a
// fill committed in between would lose its fresh entry).
func (o *Ops) Delete(ctx context.Context, ds []digest.Digest) (int, int64, error) {
	const batch = 1 << 13
	var freed int64
	n := 0
	defer o.releasePages()
	if len(ds) > batch {
		defer releaseMemory()
	}
	// Once begun, the deletions run to the end whatever ctx says: sorted,
	// each batch holds a part of every image of the plan, so stopping
	// between batches would leave many images half deleted (a million
	// blobs' pass deletes for about a second).
	ctx = context.WithoutCancel(ctx)
	ds = slices.Clone(ds)
	slices.Sort(ds)
	ds = slices.Compact(ds) // a digest with a blob and a manifest entry is listed twice
	for len(ds) > 0 {
		chunk := ds[:min(batch, len(ds))]
		ds = ds[len(chunk):]
		size, err := o.deleteEntries(ctx, chunk)
		if err != nil {
			return n, freed, err
		}
		o.releasePages() // the batch's pages: the next batch reads others
		freed += size
		if o.Forget != nil {
			o.Forget(chunk...) // a manifest kept in memory goes with its file
		}
		for _, d := range chunk {
			if err := o.store.Delete(ctx, d); err != nil {
				o.Log.Warn("delete cache file", slog.String("digest", d.String()), slog.Any("error", err))
				continue
			}
			n++
		}
	}
	if o.Deleted != nil {
		o.Deleted()
	}
	return n, freed, nil
}

// matchTag finds the index's one tag for a target as a user names it.
func (o *Ops) matchTag(ctx context.Context, t RemoveTarget) (TagRef, cacheindex.TagEntry, error) {
	reg := oci.CanonicalRegistry(t.Registry)
	var refs []TagRef
	var entries []cacheindex.TagEntry
	err := o.repoTags(ctx, reg, "", func(up, repo, tag string, e cacheindex.TagEntry) error {
		if tag != t.Tag {
			return nil
		}
		if repo == t.Repo || repo == oci.HubRepository(up, t.Repo) {
			refs = append(refs, TagRef{Upstream: up, Repository: repo, Tag: tag})
			entries = append(entries, e)
		}
		return nil
	})
	if err != nil {
		return TagRef{}, cacheindex.TagEntry{}, err
	}
	if len(refs) == 0 {
		return TagRef{}, cacheindex.TagEntry{}, fmt.Errorf("no cached tag matches %s (regcache cache ls lists the tags)", t.Raw)
	}
	if len(refs) > 1 {
		names := make([]string, len(refs))
		for i, r := range refs {
			names[i] = r.String()
		}
		return TagRef{}, cacheindex.TagEntry{}, fmt.Errorf("%s matches %s: name the registry, e.g. %s", t.Raw, strings.Join(names, ", "), refs[0].String())
	}
	return refs[0], entries[0], nil
}

// otherTag names another tag pointing to d, or "".
func (o *Ops) otherTag(ctx context.Context, not TagRef, d digest.Digest) (string, error) {
	other := ""
	err := o.index.Tags(ctx, func(up, repo, tag string, e cacheindex.TagEntry) error {
		if e.Digest == d && (TagRef{up, repo, tag}) != not && other == "" {
			other = TagRef{up, repo, tag}.String()
		}
		return nil
	})
	return other, err
}

// Prune answers `cache prune`: images least recently used first, by the
// rules of the server's eviction.
func (o *Ops) Prune(ctx context.Context, req PruneRequest) (PruneResult, error) {
	if req.ToSize <= 0 && req.OlderThan <= 0 {
		return PruneResult{}, errors.New("say how far to prune: --to-size (e.g. 50GiB) and/or --older-than (e.g. 720h)")
	}
	o.Lock.Lock()
	defer o.Lock.Unlock()
	var protected map[digest.Digest]bool
	if o.Protected != nil {
		var err error
		if protected, err = o.Protected(ctx); err != nil {
			return PruneResult{}, err
		}
	}
	var pinned map[digest.Digest]bool
	if o.Pinned != nil {
		var err error
		if pinned, err = o.Pinned(ctx); err != nil {
			return PruneResult{}, err
		}
	}
	plan, err := o.index.EvictionPlan(ctx, cacheindex.EvictPolicy{MaxSize: req.ToSize, LowWater: req.ToSize, MaxAge: req.OlderThan, Protected: protected, Pinned: pinned}, o.Now())
	if err != nil {
		return PruneResult{}, err
	}
	res := PruneResult{DryRun: req.DryRun, Files: len(plan.Evict)}
	names, err := o.tagNames(ctx, plan.Images)
	if err != nil {
		return res, err
	}
	for _, im := range plan.Images {
		res.Images = append(res.Images, PrunedImage{Digest: im.Root, Tags: names[im.Root], Bytes: im.Bytes, LastUse: im.LastUse, Manifest: im.Manifest, Offline: im.Protected})
		res.Bytes += im.Bytes
	}
	if !req.DryRun {
		if _, _, err := o.Delete(ctx, plan.Evict); err != nil {
			return res, err
		}
	}
	res.Totals = o.totals(ctx)
	return res, nil
}

// tagNames names the tags pointing to each image root.
func (o *Ops) tagNames(ctx context.Context, imgs []cacheindex.EvictedImage) (map[digest.Digest][]string, error) {
	out := map[digest.Digest][]string{}
	roots := map[digest.Digest]bool{}
	for _, im := range imgs {
		if im.Manifest {
			roots[im.Root] = true
		}
	}
	if len(roots) == 0 {
		return out, nil
	}
	err := o.index.Tags(ctx, func(up, repo, tag string, e cacheindex.TagEntry) error {
		if roots[e.Digest] && len(out[e.Digest]) < 10 {
			out[e.Digest] = append(out[e.Digest], TagRef{up, repo, tag}.String())
		}
		return nil
	})
	return out, err
}

// Verify answers `cache verify`: every file of the store is hashed; a
// damaged one is quarantined and dropped from the index, so the next
// request fetches it again; index entries whose file is gone are dropped.
// progress, if not nil, is told of every file hashed and every damage.
func (o *Ops) Verify(ctx context.Context, progress func(VerifyEvent)) (VerifyReport, error) {
	var r VerifyReport
	type file struct {
		d    digest.Digest
		size int64
	}
	var files []file
	var total int64
	if err := o.store.Walk(ctx, func(d digest.Digest, size int64) error {
		files = append(files, file{d, size})
		total += size
		return nil
	}); err != nil {
		return r, fmt.Errorf("list cache files: %w", err)
	}
	ev := VerifyEvent{Total: total}
	tell := func() {
		if progress != nil {
			progress(ev)
		}
	}
	tell()
	for _, f := range files {
		entry, indexed, _ := o.index.Blob(ctx, f.d)
		err := verify(ctx, o.store, f.d, f.size, nil)
		switch {
		case err == nil:
		case errors.Is(err, blobstore.ErrDigestMismatch), errors.Is(err, blobstore.ErrSizeMismatch):
			r.Corrupt = append(r.Corrupt, f.d)
			where, qerr := setAside(ctx, o.store, f.d)
			if qerr != nil {
				return r, qerr
			}
			o.Log.Error("a cache file does not hash to its digest: set aside and dropped, the next request fetches it again",
				slog.String("digest", f.d.String()), slog.String("quarantine", where))
			if err := o.index.DeleteBlob(ctx, f.d); err != nil {
				return r, err
			}
			if o.Forget != nil {
				o.Forget(f.d)
			}
			why := "does not hash to its digest"
			if indexed && entry.Size != f.size {
				why = fmt.Sprintf("%d bytes, %d when committed", f.size, entry.Size)
			}
			ev.Damaged, ev.Size, ev.Why = f.d, f.size, why
			tell()
			ev.Damaged, ev.Size, ev.Why = "", 0, ""
		case errors.Is(err, blobstore.ErrNotFound): // removed since the walk
			continue
		default:
			return r, err
		}
		r.Files++
		r.Bytes += f.size
		ev.Done += f.size
		ev.Files++
		tell()
	}
	if err := o.dropLost(ctx, &r); err != nil {
		return r, err
	}
	if o.Deleted != nil {
		o.Deleted()
	}
	return r, nil
}

// dropLost drops index entries whose file is gone.
func (o *Ops) dropLost(ctx context.Context, r *VerifyReport) error {
	var gone []digest.Digest
	check := func(d digest.Digest) {
		if _, err := o.store.Stat(ctx, d); errors.Is(err, blobstore.ErrNotFound) && !slices.Contains(r.Corrupt, d) {
			gone = append(gone, d)
		}
	}
	if err := o.index.Blobs(ctx, func(d digest.Digest, _ cacheindex.BlobEntry) error { check(d); return nil }); err != nil {
		return err
	}
	if err := o.index.Manifests(ctx, func(d digest.Digest, _ cacheindex.ManifestEntry) error { check(d); return nil }); err != nil {
		return err
	}
	if _, err := o.deleteEntries(ctx, gone); err != nil {
		return err
	}
	if o.Forget != nil {
		o.Forget(gone...)
	}
	r.Dropped = append(r.Dropped, gone...)
	slices.Sort(r.Dropped)
	return nil
}

// quarantineCounter is a store that counts what it set aside, and says
// where.
type quarantineCounter interface {
	Quarantined(ctx context.Context) (n int, where string, err error)
}

// Stats answers `cache stats`.
func (o *Ops) Stats(ctx context.Context) (CacheStats, error) {
	st := CacheStats{Totals: o.totals(ctx)}
	q, ok := o.store.(quarantineCounter)
	if !ok {
		return st, nil
	}
	n, where, err := q.Quarantined(ctx)
	st.Quarantined, st.Quarantine = n, where
	return st, err
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// releaseMemory returns a large pass's memory to the system. Two
// collections: bbolt keeps the page buffers of a commit in a sync.Pool,
// which one collection only moves to its victim cache.
func releaseMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}
