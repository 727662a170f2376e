package app

import (
	"cmp"
	"slices"
)

// repoKey names a repository of an upstream.
type repoKey struct{ upstream, repo string }

// topK finds the heaviest repositories in bounded memory with the
// Space-Saving algorithm (Metwally et al., 2005): at most size counters;
// a new key takes the smallest counter's place and inherits its count, so
// a key's count is never under its true weight and over it by at most the
// count it inherited. Any key heavier than total/size is kept.
type topK struct {
	size    int
	entries map[repoKey]*topEntry
}

type topEntry struct {
	key   repoKey
	count int64
	over  int64 // the count inherited on entry: the most count can exceed the truth by
}

func newTopK(size int) *topK { return &topK{size: size, entries: map[repoKey]*topEntry{}} }

func (t *topK) add(k repoKey, n int64) {
	if e, ok := t.entries[k]; ok {
		e.count += n
		return
	}
	if len(t.entries) < t.size {
		t.entries[k] = &topEntry{key: k, count: n}
		return
	}
	var least *topEntry
	for _, e := range t.entries { // size is small: a scan beats a heap's upkeep here
		if least == nil || e.count < least.count {
			least = e
		}
	}
	delete(t.entries, least.key)
	t.entries[k] = &topEntry{key: k, count: least.count + n, over: least.count}
}

// top returns the n heaviest, heaviest first (ties by name).
func (t *topK) top(n int) []topEntry {
	out := make([]topEntry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b topEntry) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return cmp.Compare(a.key.upstream+"/"+a.key.repo, b.key.upstream+"/"+b.key.repo)
	})
	return out[:min(n, len(out))]
}
