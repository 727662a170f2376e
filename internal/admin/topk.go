package admin

import (
	"cmp"
	"container/heap"
	"slices"
)

// repoKey names a repository of an upstream.
type repoKey struct{ upstream, repo string }

// topK finds the heaviest repositories in bounded memory with the
// Space-Saving algorithm (Metwally et al., 2005): at most size counters;
// a new key takes the smallest counter's place and inherits its count, so
// a key's count is never under its true weight and over it by at most the
// count it inherited. Any key heavier than total/size is kept. The
// counters are a min-heap, so finding the smallest is O(1) and an update
// O(log size).
type topK struct {
	size    int
	entries map[repoKey]*topEntry
	heap    topHeap
}

type topEntry struct {
	key   repoKey
	count int64
	over  int64 // the count inherited on entry: the most count can exceed the truth by
	index int   // in the heap
}

func newTopK(size int) *topK { return &topK{size: size, entries: map[repoKey]*topEntry{}} }

func (t *topK) add(k repoKey, n int64) {
	if e, ok := t.entries[k]; ok {
		e.count += n
		heap.Fix(&t.heap, e.index)
		return
	}
	if len(t.entries) < t.size {
		e := &topEntry{key: k, count: n}
		t.entries[k] = e
		heap.Push(&t.heap, e)
		return
	}
	least := t.heap[0]
	delete(t.entries, least.key)
	least.key, least.over, least.count = k, least.count, least.count+n
	t.entries[k] = least
	heap.Fix(&t.heap, 0)
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

// topHeap is a min-heap of counters by count (container/heap).
type topHeap []*topEntry

func (h topHeap) Len() int           { return len(h) }
func (h topHeap) Less(i, j int) bool { return h[i].count < h[j].count }
func (h topHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *topHeap) Push(x any) {
	e := x.(*topEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *topHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
