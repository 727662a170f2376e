package cache

import (
	"context"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/rules"
)

// RulePolicy is what the rules ask of an eviction or a prune: the tagged
// manifests a rule pins, and the max_age rules give tagged manifests (the
// longest when several tags of one image say different things). Both are
// nil when no rule pins or sets an age.
func RulePolicy(ctx context.Context, ix cacheindex.Backend, rs *rules.Set) (pinned map[digest.Digest]bool, ages map[digest.Digest]time.Duration, err error) {
	if !rs.Pins() && !rs.Ages() {
		return nil, nil, nil
	}
	pinned, ages = map[digest.Digest]bool{}, map[digest.Digest]time.Duration{}
	err = ix.Tags(ctx, func(up, repo, tag string, e cacheindex.TagEntry) error {
		r, ok := rs.Match(up, repo, tag)
		switch {
		case !ok:
		case r.Pin:
			pinned[e.Digest] = true
		case r.MaxAge != nil:
			if old, seen := ages[e.Digest]; !seen || *r.MaxAge > old {
				ages[e.Digest] = *r.MaxAge
			}
		}
		return nil
	})
	return pinned, ages, err
}

// UseRules gives a stopped mirror's cache the configuration's rules:
// listings name the rule of each tag, and prunes keep pinned images.
func (c *Cache) UseRules(rs *rules.Set) {
	c.ops.Rule = func(upstream, repo, tag string) string {
		if r, ok := rs.Match(upstream, repo, tag); ok {
			return r.String()
		}
		return ""
	}
	c.ops.Pinned = func(ctx context.Context) (map[digest.Digest]bool, error) {
		p, _, err := RulePolicy(ctx, c.index, rs)
		return p, err
	}
}
