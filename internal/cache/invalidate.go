package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
)

// InvalidateRequest is what `cache invalidate` asks: each target names a
// tag (Tag set) or every tag of a repository (Tag ""), as a user names
// them (see RemoveTarget). Digests are not targets: content by digest
// never changes.
type InvalidateRequest struct {
	Targets []RemoveTarget `json:"targets"`
}

// InvalidateResult lists the tags forgotten.
type InvalidateResult struct {
	Tags []TagRef `json:"tags"`
}

// Invalidate marks tags as never checked, in the index, and drops them
// from the server's memory (ForgetTag), so the next pull of each asks the
// upstream (a HEAD, not a counted pull, when the digest is unchanged;
// immutable rules included) whatever its freshness. The entry and the
// content stay: if the upstream cannot be reached, the tag is still
// served stale, as any tag is. A pull in flight finishes with what it read.
func (o *Ops) Invalidate(ctx context.Context, req InvalidateRequest) (InvalidateResult, error) {
	var res InvalidateResult
	for _, t := range req.Targets {
		if t.Digest != "" {
			return res, fmt.Errorf("%s: name a tag or a repository; content by digest never changes (cache rm deletes it)", t.Raw)
		}
		refs, entries, err := o.invalidTargets(ctx, t)
		if err != nil {
			return res, err
		}
		for i, ref := range refs {
			e := entries[i]
			e.Checked = time.Time{}
			if err := o.index.PutTag(ctx, ref.Upstream, ref.Repository, ref.Tag, e); err != nil {
				return res, fmt.Errorf("invalidate tag %s: %w", ref, err)
			}
			if o.ForgetTag != nil {
				o.ForgetTag(ref.Upstream, ref.Repository, ref.Tag)
			}
			res.Tags = append(res.Tags, ref)
		}
	}
	return res, nil
}

// invalidTargets are the cached tags a target names.
func (o *Ops) invalidTargets(ctx context.Context, t RemoveTarget) ([]TagRef, []cacheindex.TagEntry, error) {
	if t.Tag != "" {
		ref, e, err := o.matchTag(ctx, t)
		return []TagRef{ref}, []cacheindex.TagEntry{e}, err
	}
	var refs []TagRef
	var entries []cacheindex.TagEntry
	ups := map[string]bool{}
	err := o.repoTags(ctx, oci.CanonicalRegistry(t.Registry), "", func(up, repo, tag string, e cacheindex.TagEntry) error {
		if repo == t.Repo || repo == oci.HubRepository(up, t.Repo) {
			refs, entries, ups[up] = append(refs, TagRef{Upstream: up, Repository: repo, Tag: tag}), append(entries, e), true
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, nil, err
	case len(refs) == 0:
		return nil, nil, fmt.Errorf("no cached tag of %s (regcache cache ls lists the tags)", t.Raw)
	case len(ups) > 1:
		return nil, nil, errors.New(t.Raw + " has tags under several upstreams: name the registry, e.g. " + refs[0].Upstream + "/" + refs[0].Repository)
	}
	return refs, entries, nil
}
