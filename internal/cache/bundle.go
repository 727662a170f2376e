package cache

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
)

// A cache bundle is an OCI image layout in a tar stream (what `skopeo copy
// oci-archive:` reads): oci-layout, then blobs/<algorithm>/<hex> for every
// manifest and blob the tags reach that the cache holds, then index.json
// naming each tag as <upstream>/<repository>:<tag>
// (org.opencontainers.image.ref.name and io.containerd.image.name). The
// index comes last so that an interrupted export's file is the part of a
// bundle before it: a resumed export (ExportRequest.Resume) writes the
// entries that file lacks, then the index.

// ExportRequest is what `cache export` asks: the tags to export (targets
// as for rm), or every cached tag when none is named.
type ExportRequest struct {
	Targets []RemoveTarget `json:"targets,omitempty"`
	// DryRun checks the names and counts what would be written (files,
	// bytes), writing nothing.
	DryRun bool `json:"dryRun,omitempty"`
	// Resume continues a bundle that was cut short: the stream starts
	// with the first entry that bundle lacks (no oci-layout), and Skip
	// are the files it already holds, checked against their digests.
	Resume bool            `json:"resume,omitempty"`
	Skip   []digest.Digest `json:"skip,omitempty"`
}

// BundleResult is what an export wrote or an import loaded.
type BundleResult struct {
	Tags  []TagRef `json:"tags"`
	Files int      `json:"files"`
	Bytes int64    `json:"bytes"`
	// Skipped are files an import found already in the cache.
	Skipped int `json:"skipped,omitempty"`
	// Missing counts what the tags reference and the bundle does not
	// hold (platforms or layers never pulled): a pull of those fetches
	// them, or fails on a sealed upstream.
	Missing int `json:"missing,omitempty"`
}

const (
	refNameAnnotation    = v1.AnnotationRefName
	containerdAnnotation = "io.containerd.image.name"
)

// Export writes a bundle of the tags to w, streaming every file from the
// store.
func (o *Ops) Export(ctx context.Context, w io.Writer, req ExportRequest) (BundleResult, error) {
	var res BundleResult
	tags, entries, err := o.exportTags(ctx, req)
	if err != nil {
		return res, err
	}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{}}
	var files []digest.Digest
	seen := map[digest.Digest]bool{}
	skip := map[digest.Digest]bool{} // held by the bundle being resumed
	for _, d := range req.Skip {
		skip[d] = true
	}
	var toWrite int64
	for i, ref := range tags {
		e := entries[i]
		size := e.Size
		if size <= 0 {
			if size, err = o.store.Stat(ctx, e.Digest); err != nil {
				res.Missing++
				continue // its manifest is not stored: nothing to export
			}
		}
		name := ref.String()
		idx.Manifests = append(idx.Manifests, v1.Descriptor{MediaType: e.MediaType, Digest: e.Digest, Size: size,
			Annotations: map[string]string{refNameAnnotation: name, containerdAnnotation: name}})
		res.Tags = append(res.Tags, ref)
		reach, missing, err := o.reach(ctx, e.Digest, seen)
		if err != nil {
			return res, err
		}
		for _, f := range reach {
			if !skip[f.d] {
				files, toWrite = append(files, f.d), toWrite+f.size
			}
		}
		res.Missing += missing
	}
	if len(res.Tags) == 0 {
		return res, errors.New("nothing to export: no stored image matches")
	}
	if req.DryRun {
		res.Files, res.Bytes = len(files), toWrite
		return res, nil
	}
	tw := tar.NewWriter(w)
	if !req.Resume {
		if err := writeTarFile(tw, v1.ImageLayoutFile, mustJSON(v1.ImageLayout{Version: v1.ImageLayoutVersion})); err != nil {
			return res, err
		}
	}
	for _, d := range files {
		n, err := o.exportBlob(ctx, tw, d)
		if err != nil {
			return res, err
		}
		res.Files, res.Bytes = res.Files+1, res.Bytes+n
	}
	if err := writeTarFile(tw, v1.ImageIndexFile, mustJSON(idx)); err != nil {
		return res, err
	}
	return res, tw.Close()
}

// exportTags are the tags a request names, with their entries.
func (o *Ops) exportTags(ctx context.Context, req ExportRequest) ([]TagRef, []cacheindex.TagEntry, error) {
	if len(req.Targets) == 0 {
		var refs []TagRef
		var entries []cacheindex.TagEntry
		err := o.index.Tags(ctx, func(up, repo, tag string, e cacheindex.TagEntry) error {
			refs, entries = append(refs, TagRef{up, repo, tag}), append(entries, e)
			return nil
		})
		return refs, entries, err
	}
	var refs []TagRef
	var entries []cacheindex.TagEntry
	for _, t := range req.Targets {
		if t.Digest != "" || t.Tag == "" {
			return nil, nil, fmt.Errorf("%s: name a tag to export (alpine:3.20), or none for every cached tag", t.Raw)
		}
		ref, e, err := o.matchTag(ctx, t)
		if err != nil {
			return nil, nil, err
		}
		refs, entries = append(refs, ref), append(entries, e)
	}
	return refs, entries, nil
}

// sizedFile is a file of a bundle and its size.
type sizedFile struct {
	d    digest.Digest
	size int64
}

// reach lists root and what its stored manifests reference, recursively,
// that the store holds and seen does not yet, with their sizes; missing
// counts references not stored.
func (o *Ops) reach(ctx context.Context, root digest.Digest, seen map[digest.Digest]bool) (out []sizedFile, missing int, err error) {
	stack := []digest.Digest{root}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[d] {
			continue
		}
		seen[d] = true
		size, err := o.store.Stat(ctx, d)
		if errors.Is(err, blobstore.ErrNotFound) {
			missing++
			continue
		} else if err != nil {
			return nil, 0, err
		}
		out = append(out, sizedFile{d, size})
		m, ok, err := o.index.Manifest(ctx, d)
		if err != nil {
			return nil, 0, err
		}
		if ok {
			stack = append(stack, m.Refs...)
		}
	}
	return out, missing, nil
}

func (o *Ops) exportBlob(ctx context.Context, tw *tar.Writer, d digest.Digest) (int64, error) {
	b, err := o.store.Open(ctx, d)
	if err != nil {
		return 0, fmt.Errorf("export %s: %w", d, err)
	}
	defer b.Close()
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(d), Mode: 0o644, Size: b.Size(), Typeflag: tar.TypeReg}); err != nil {
		return 0, err
	}
	n, err := io.Copy(tw, b)
	if err != nil {
		return n, fmt.Errorf("export %s: %w", d, err)
	}
	return n, nil
}

func blobPath(d digest.Digest) string {
	return "blobs/" + string(d.Algorithm()) + "/" + d.Encoded()
}

func writeTarFile(tw *tar.Writer, name string, body []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the layout types always marshal
	}
	return b
}

// Import loads a bundle from r: every file is written to the store and
// committed only if it hashes to its name (the store checks the digest
// and the size), files already stored are skipped, and the tags of
// index.json are recorded with their manifests and blobs once the whole
// stream has been read and checked. A truncated or tampered bundle is
// refused, naming the file, and what this import committed is deleted
// again: nothing partial is left.
func (o *Ops) Import(ctx context.Context, r io.Reader) (res BundleResult, err error) {
	o.Lock.Lock()
	defer o.Lock.Unlock()
	var added []digest.Digest
	defer func() {
		if err != nil {
			for _, d := range added {
				_ = o.store.Delete(context.WithoutCancel(ctx), d)
			}
			res = BundleResult{}
		}
	}()
	var idx *v1.Index
	sizes := map[digest.Digest]int64{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("read bundle: %w (truncated?)", err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case h.Typeflag == tar.TypeDir:
		case name == v1.ImageLayoutFile:
		case name == v1.ImageIndexFile:
			body, err := io.ReadAll(io.LimitReader(tr, oci.MaxManifestSize+1))
			if err != nil {
				return res, fmt.Errorf("read index.json: %w", err)
			}
			idx = &v1.Index{}
			if len(body) > oci.MaxManifestSize || json.Unmarshal(body, idx) != nil {
				return res, errors.New("index.json is not an OCI image index")
			}
		case strings.HasPrefix(name, "blobs/"):
			d, err := digestOfPath(name)
			if err != nil {
				return res, err
			}
			if n, err := o.store.Stat(ctx, d); err == nil && n == h.Size {
				sizes[d] = n
				res.Skipped++
				continue
			}
			if err := o.importBlob(ctx, tr, d, h.Size); err != nil {
				return res, err
			}
			added, sizes[d] = append(added, d), h.Size
			res.Files, res.Bytes = res.Files+1, res.Bytes+h.Size
		default:
			return res, fmt.Errorf("the bundle holds %s, which an OCI image layout does not", h.Name)
		}
	}
	if idx == nil {
		return res, errors.New("the bundle has no index.json (it comes last: truncated?), or is not an OCI image layout")
	}
	if err := o.recordBundle(ctx, idx, sizes, &res); err != nil {
		return res, err
	}
	return res, nil
}

func digestOfPath(name string) (digest.Digest, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 {
		return "", fmt.Errorf("the bundle holds %s, not blobs/<algorithm>/<hex>", name)
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("the bundle holds %s: %w", name, err)
	}
	return d, nil
}

// importBlob writes one file to the store, committed only if it hashes to
// d and is size bytes long.
func (o *Ops) importBlob(ctx context.Context, r io.Reader, d digest.Digest, size int64) error {
	w, err := o.store.Create(ctx, d)
	if err != nil {
		return fmt.Errorf("import %s: %w", d, err)
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		_ = w.Cancel()
		return fmt.Errorf("import %s: %w (truncated bundle?)", d, err)
	}
	if err := w.Commit(ctx, size); err != nil {
		return fmt.Errorf("import %s: refused: %w", d, err)
	}
	return nil
}

// recordBundle records the tags of index.json, with the manifests they
// reach (as their repository's holdings and their upstream's origin) and
// the blobs, in the index. Every manifest a tag names must be stored.
func (o *Ops) recordBundle(ctx context.Context, idx *v1.Index, sizes map[digest.Digest]int64, res *BundleResult) error {
	type tagged struct {
		ref  TagRef
		desc v1.Descriptor
	}
	var tags []tagged
	for _, desc := range idx.Manifests {
		name := desc.Annotations[containerdAnnotation]
		if name == "" {
			name = desc.Annotations[refNameAnnotation]
		}
		ref, err := bundleRef(name)
		if err != nil {
			return err
		}
		if _, ok := sizes[desc.Digest]; !ok {
			return fmt.Errorf("index.json names %s for %s, which the bundle does not hold", desc.Digest, name)
		}
		tags = append(tags, tagged{ref, desc})
	}
	manifests := map[digest.Digest]cacheindex.ManifestEntry{}
	var order []digest.Digest
	for _, t := range tags { // read every manifest before writing anything
		stack := []digest.Digest{t.desc.Digest}
		for len(stack) > 0 {
			d := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if _, done := manifests[d]; done {
				continue
			}
			e, ok, err := o.bundleManifest(ctx, d, sizes)
			if err != nil {
				return err
			}
			if !ok {
				continue // a blob, or not in the bundle
			}
			manifests[d], order = e, append(order, d)
			stack = append(stack, e.Refs...)
		}
	}
	for d, n := range sizes {
		if _, m := manifests[d]; !m {
			if err := o.index.PutBlob(ctx, d, n); err != nil {
				return err
			}
		}
	}
	for _, t := range tags {
		// What the tag reaches, for its repository and its upstream.
		reach := map[digest.Digest]bool{}
		stack := []digest.Digest{t.desc.Digest}
		for len(stack) > 0 {
			d := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if reach[d] {
				continue
			}
			reach[d] = true
			if e, ok := manifests[d]; ok {
				stack = append(stack, e.Refs...)
			} else if _, held := sizes[d]; !held {
				res.Missing++
			}
		}
		for _, d := range order {
			if reach[d] {
				if err := o.index.PutManifest(ctx, t.ref.Upstream, t.ref.Repository, d, manifests[d]); err != nil {
					return err
				}
			}
		}
		for d := range reach {
			if _, held := sizes[d]; !held {
				continue
			}
			if err := o.index.PutOrigin(ctx, t.ref.Upstream, d); err != nil {
				return err
			}
			if err := o.index.PutHolds(ctx, t.ref.Upstream, t.ref.Repository, d); err != nil {
				return err
			}
		}
		now := o.Now()
		m := manifests[t.desc.Digest]
		if err := o.index.PutTag(ctx, t.ref.Upstream, t.ref.Repository, t.ref.Tag, cacheindex.TagEntry{Digest: t.desc.Digest,
			MediaType: m.MediaType, Size: m.Size, Fetched: now, Checked: now}); err != nil {
			return err
		}
		if o.ForgetTag != nil {
			o.ForgetTag(t.ref.Upstream, t.ref.Repository, t.ref.Tag)
		}
		res.Tags = append(res.Tags, t.ref)
	}
	slices.SortFunc(res.Tags, func(a, b TagRef) int { return strings.Compare(a.String(), b.String()) })
	return o.index.Flush(ctx)
}

// bundleManifest reads d from the store if it is a manifest (a JSON
// document with a manifest media type); ok is false for a blob or
// content the bundle does not hold.
func (o *Ops) bundleManifest(ctx context.Context, d digest.Digest, sizes map[digest.Digest]int64) (cacheindex.ManifestEntry, bool, error) {
	n, held := sizes[d]
	if !held || n > oci.MaxManifestSize {
		return cacheindex.ManifestEntry{}, false, nil
	}
	b, err := o.store.Open(ctx, d)
	if err != nil {
		return cacheindex.ManifestEntry{}, false, fmt.Errorf("read %s: %w", d, err)
	}
	defer b.Close()
	body, err := io.ReadAll(io.LimitReader(b, oci.MaxManifestSize+1))
	if err != nil {
		return cacheindex.ManifestEntry{}, false, fmt.Errorf("read %s: %w", d, err)
	}
	mediaType, ok := oci.SniffManifest(body)
	if !ok {
		return cacheindex.ManifestEntry{}, false, nil
	}
	if d.Algorithm().FromBytes(body) != d {
		return cacheindex.ManifestEntry{}, false, fmt.Errorf("stored %s does not hash to its digest", d)
	}
	return cacheindex.ManifestEntry{MediaType: mediaType, Size: int64(len(body)), Refs: oci.References(body)}, true, nil
}

// bundleRef parses an index.json name: <upstream>/<repository>:<tag>.
func bundleRef(name string) (TagRef, error) {
	up, rest, ok := strings.Cut(name, "/")
	repo, tag, hasTag := strings.Cut(rest, ":")
	if !ok || !hasTag || up == "" || repo == "" || tag == "" {
		return TagRef{}, fmt.Errorf("index.json names an image %q: want <upstream>/<repository>:<tag> (as regcache cache export writes)", name)
	}
	return TagRef{Upstream: up, Repository: repo, Tag: tag}, nil
}
