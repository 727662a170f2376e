package mirror

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/oci"
)

// memory keeps what a warm manifest hit needs, so it touches no disk and
// no bbolt transaction: small manifests by digest (immutable, verified when
// fetched), tags with their last check (written through after the index),
// and the (upstream, repository, digest) holdings already confirmed. The
// index and the store stay the truth: memory starts empty after a restart
// and fills on fetch and on first read.
//
// Manifests are bounded by bytes and dropped by second chance: a read sets
// a flag without a lock; a sweep (under the write lock, when the budget is
// exceeded) drops entries not read since the last sweep. Tags and holdings
// are bounded by count; when full they are cleared, which costs one index
// read per entry to refill.
type memory struct {
	maxBytes int64

	mu        sync.RWMutex
	manifests map[digest.Digest]*memManifest
	bytes     int64
	tags      map[tagKey]memTag
	held      map[holdKey]struct{}
	// complete are image manifests whose blobs were all in the store when
	// last looked at: a hit does not look again (prefetch has nothing to
	// do). Cleared by forget, since eviction may have taken a blob.
	complete map[digest.Digest]struct{}
	sizes    map[holdKey]int64 // blob sizes from manifests, per upstream and repository
}

type memManifest struct {
	m    *Manifest
	refs []digest.Digest // what it references, parsed once
	used atomic.Bool
}

type tagKey struct{ upstream, repo, tag string }

// memTag is a tag's entry with when memory took it from the index (or
// wrote it there): a replica of a cluster trusts it for sharedTagMemory
// only, since another replica may have changed or dropped it.
type memTag struct {
	e  cacheindex.TagEntry
	at time.Time
}

type holdKey struct {
	upstream, repo string
	d              digest.Digest
}

const (
	// maxMemoryManifest is the largest manifest kept in memory; bigger
	// ones (rare: huge indexes) are read from the store.
	maxMemoryManifest = 256 << 10
	maxMemoryTags     = 100_000
	maxMemoryHolds    = 500_000
)

func newMemory(maxBytes int64) *memory {
	return &memory{maxBytes: maxBytes, manifests: map[digest.Digest]*memManifest{},
		tags: map[tagKey]memTag{}, held: map[holdKey]struct{}{}, complete: map[digest.Digest]struct{}{}, sizes: map[holdKey]int64{}}
}

func (mem *memory) manifest(d digest.Digest) *Manifest {
	m, _ := mem.manifestRefs(d)
	return m
}

// manifestRefs is manifest with the digests it references.
func (mem *memory) manifestRefs(d digest.Digest) (*Manifest, []digest.Digest) {
	mem.mu.RLock()
	e := mem.manifests[d]
	mem.mu.RUnlock()
	if e == nil {
		return nil, nil
	}
	e.used.Store(true)
	return e.m, e.refs
}

func (mem *memory) putManifest(m *Manifest) {
	size := int64(len(m.Body))
	if mem.maxBytes <= 0 || size > maxMemoryManifest || size > mem.maxBytes {
		return
	}
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if _, ok := mem.manifests[m.Digest]; ok {
		return
	}
	for mem.bytes+size > mem.maxBytes {
		mem.sweep()
	}
	mem.manifests[m.Digest] = &memManifest{m: m, refs: oci.References(m.Body)}
	mem.bytes += size
}

// sweep drops the manifests not read since the last sweep and clears the
// flags of the others; a sweep that frees nothing drops everything's
// flags, so the next one frees. Called with mu held.
func (mem *memory) sweep() {
	freed := false
	for d, e := range mem.manifests {
		if !e.used.Swap(false) {
			mem.bytes -= int64(len(e.m.Body))
			delete(mem.manifests, d)
			freed = true
		}
	}
	if !freed && len(mem.manifests) == 0 {
		mem.bytes = 0
	}
}

func (mem *memory) forget(ds ...digest.Digest) {
	mem.mu.Lock()
	defer mem.mu.Unlock()
	clear(mem.complete)
	for _, d := range ds {
		if e, ok := mem.manifests[d]; ok {
			mem.bytes -= int64(len(e.m.Body))
			delete(mem.manifests, d)
		}
	}
	gone := map[digest.Digest]bool{}
	for _, d := range ds {
		gone[d] = true
	}
	for k, t := range mem.tags {
		if gone[t.e.Digest] {
			delete(mem.tags, k)
		}
	}
}

// tag is the tag's entry in memory if memory took it within maxAge (0:
// whenever).
func (mem *memory) tag(k tagKey, maxAge time.Duration) (cacheindex.TagEntry, bool) {
	mem.mu.RLock()
	defer mem.mu.RUnlock()
	t, ok := mem.tags[k]
	if ok && maxAge > 0 && time.Since(t.at) >= maxAge {
		return cacheindex.TagEntry{}, false
	}
	return t.e, ok
}

// forgetTags drops a tag, or every tag of a repository (tag "").
func (mem *memory) forgetTags(upstream, repo, tag string) {
	mem.mu.Lock()
	defer mem.mu.Unlock()
	for k := range mem.tags {
		if k.upstream == upstream && k.repo == repo && (tag == "" || k.tag == tag) {
			delete(mem.tags, k)
		}
	}
}

func (mem *memory) putTag(k tagKey, t cacheindex.TagEntry) {
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if len(mem.tags) >= maxMemoryTags {
		clear(mem.tags)
	}
	mem.tags[k] = memTag{t, time.Now()}
}

func (mem *memory) holds(k holdKey) bool {
	mem.mu.RLock()
	defer mem.mu.RUnlock()
	_, ok := mem.held[k]
	return ok
}

func (mem *memory) putHolds(upstream, repo string, ds ...digest.Digest) {
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if len(mem.held)+len(ds) > maxMemoryHolds {
		clear(mem.held)
	}
	for _, d := range ds {
		mem.held[holdKey{upstream, repo, d}] = struct{}{}
	}
}

// size is the bytes of manifests held, for tests and status.
func (mem *memory) size() (manifests int, bytes int64) {
	mem.mu.RLock()
	defer mem.mu.RUnlock()
	return len(mem.manifests), mem.bytes
}

func (mem *memory) isComplete(d digest.Digest) bool {
	mem.mu.RLock()
	defer mem.mu.RUnlock()
	_, ok := mem.complete[d]
	return ok
}

func (mem *memory) markComplete(d digest.Digest) {
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if len(mem.complete) >= maxMemoryTags {
		clear(mem.complete)
	}
	mem.complete[d] = struct{}{}
}

// Origins share the holdings map under an empty repository name (never a
// valid one): "this upstream served these bytes".
func (mem *memory) isOrigin(upstream string, d digest.Digest) bool {
	return mem.holds(holdKey{upstream, "", d})
}

func (mem *memory) putOrigin(upstream string, d digest.Digest) { mem.putHolds(upstream, "", d) }

// Sizes a manifest of an upstream gave its blobs, so the fill of one is cut
// at that size (an upstream's endless body is not taken on trust). Keyed by
// upstream: another upstream's manifest cannot set the size of this one's
// fills, nor another repository's manifest this one's. The map is cleared
// when full.
func (mem *memory) blobSize(upstream, repo string, d digest.Digest) (int64, bool) {
	mem.mu.RLock()
	defer mem.mu.RUnlock()
	n, ok := mem.sizes[holdKey{upstream, repo, d}]
	return n, ok
}

func (mem *memory) putBlobSizes(upstream, repo string, sizes map[digest.Digest]int64) {
	mem.mu.Lock()
	defer mem.mu.Unlock()
	if len(mem.sizes)+len(sizes) > maxMemoryHolds {
		clear(mem.sizes)
	}
	for d, n := range sizes {
		mem.sizes[holdKey{upstream, repo, d}] = n
	}
}
