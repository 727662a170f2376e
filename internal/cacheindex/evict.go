package cacheindex

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// EvictPolicy bounds the cache.
type EvictPolicy struct {
	MaxSize int64 // total bytes of blobs and manifests to keep; 0 is unlimited
	// LowWater is what an eviction brings the total down to once it is over
	// MaxSize (default 90 % of MaxSize), so one commit does not start an
	// eviction per blob.
	LowWater int64
	MaxAge   time.Duration // drop images not used for this long; 0 is off
	// Protected are digests kept, with everything they reach, while the
	// cap allows it: the manifests of tags whose upstream is unreachable
	// (their content is perhaps the only copy). An image any of whose
	// manifests is protected is passed over; when evicting everything else
	// does not bring the total within MaxSize, the cap wins and protected
	// images go too, least recently used first.
	Protected map[digest.Digest]bool
	// Pinned are digests (tagged manifests a rule pins) whose images are
	// never taken, by age or by size, even when the cap cannot be met
	// without them; their bytes count toward the total.
	Pinned map[digest.Digest]bool
	// MaxAgeOf replaces MaxAge for an image holding one of these
	// manifests (a rule's max_age; 0: never dropped for age). An image
	// with several takes the longest.
	MaxAgeOf map[digest.Digest]time.Duration
}

// Plan is what an eviction deletes.
type Plan struct {
	// PinnedBytes are the bytes pinned images hold (each file once).
	PinnedBytes int64
	// CapUnmet is set when the total stays over MaxSize after the plan:
	// pinned images alone, or with what is being filled, exceed it.
	CapUnmet bool
	// Evict is every file to delete, blobs and manifests, image by image.
	Evict []digest.Digest
	// Images are the images evicted, least recently used first.
	Images []EvictedImage
	// LostProtected are the protected digests the cap took.
	LostProtected []digest.Digest
}

// EvictedImage is one image an eviction takes: a top manifest (one no
// other stored manifest references) with what only it holds, or a blob no
// manifest references.
type EvictedImage struct {
	Root     digest.Digest
	Manifest bool
	// Bytes are the bytes freed: the files only this image held.
	Bytes   int64
	LastUse time.Time
	// Protected is set when the cap took an image kept as the offline
	// copy of a tag whose upstream is down.
	Protected bool
}

// EvictionPlan lists what to delete under the policy, by image, least
// recently used first: every unprotected image unused for MaxAge, then,
// when the total is over MaxSize, more down to LowWater (unprotected first;
// protected ones only as far as MaxSize needs). An image is a top manifest
// (an index with its platform manifests, or an image manifest) and the
// blobs it references; evicting it deletes what no kept image also
// references, so layers shared with a kept image stay. A blob that no
// manifest references is an image of its own. Being recently pulled is a
// place in the order, not a shield. A blob being filled is not in the
// index until its commit, so no plan holds it.
//
// An image's last use is the latest access of its manifests (every pull
// reads them; a manifest hit also marks its blobs), or of its blobs when
// its manifests have no access recorded (indexes written before manifests
// had one). The pass reads every blob and manifest entry once into compact
// arrays: a million blobs take about 60 MiB for the pass's duration.
func (ix *Index) EvictionPlan(ctx context.Context, p EvictPolicy, now time.Time) (Plan, error) {
	if err := ix.Flush(ctx); err != nil {
		return Plan{}, err
	}
	defer lowerGC()()
	g, err := ix.loadGraph()
	if err != nil {
		return Plan{}, err
	}
	defer ix.releasePages()
	plan := g.plan(p, now)
	g = nil
	runtime.GC() // the graph is garbage now: its memory goes before the caller's deletions add theirs
	return plan, nil
}

// passGCPercent is the garbage collector's target while a pass holds its
// graph: the heap may grow to 1.25 times what is live instead of twice
// (a million blobs: about 190 MiB of process memory at the peak at the
// default, 150 MiB being the server's bound).
const passGCPercent = 25

var passGC struct {
	sync.Mutex
	depth, prev int
}

// lowerGC sets the collector's target to passGCPercent until the returned
// func is called, unless it is already lower (or off: GOGC=off is the
// operator's); overlapping passes restore it once, when the last ends.
func lowerGC() func() {
	passGC.Lock()
	if passGC.depth == 0 {
		if passGC.prev = debug.SetGCPercent(passGCPercent); passGC.prev < passGCPercent {
			debug.SetGCPercent(passGC.prev) // lower already, or off (GOGC=off is negative)
		}
	}
	passGC.depth++
	passGC.Unlock()
	return func() {
		passGC.Lock()
		if passGC.depth--; passGC.depth == 0 {
			debug.SetGCPercent(passGC.prev)
		}
		passGC.Unlock()
	}
}

// blobKey is a blob's digest in 32 bytes: a sha256 digest's own bytes, the
// sha256 of the digest string for other algorithms (kept aside by name).
type blobKey [32]byte

func keyOf(d []byte) (blobKey, bool) {
	var k blobKey
	if hx, ok := bytes.CutPrefix(d, []byte("sha256:")); ok && len(hx) == 64 {
		if _, err := hex.Decode(k[:], hx); err == nil {
			return k, true
		}
	}
	return sha256.Sum256(d), false
}

type blobRec struct {
	hi     uint64 // the key's first 8 bytes, big-endian: most comparisons stop there
	key    blobKey
	size   int64
	access int64 // Unix nanoseconds
}

func cmpRec(a blobRec, hi uint64, k *blobKey) int {
	switch {
	case a.hi < hi:
		return -1
	case a.hi > hi:
		return 1
	}
	return bytes.Compare(a.key[8:], k[8:])
}

type manifestRec struct {
	d          digest.Digest
	size       int64
	access     int64
	refs, nref int32 // graph.refs[refs:refs+nref] are its references
	parent     bool  // another stored manifest references it
}

// graph is the index's blobs and manifests, compact, for one pass.
type graph struct {
	blobs     []blobRec // sorted by key
	starts    []int32   // blobs[starts[b]:starts[b+1]] have keys whose first bucketBits are b
	other     map[blobKey]digest.Digest
	manifests []manifestRec
	// refs are the manifests' references, each manifest's in a run: >= 0
	// a blob's index, < 0 -1-i for manifest i. One array, not one per
	// manifest: 1.2 million references are 5 MB here.
	refs  []int32
	total int64
}

// refsOf returns manifest m's references.
func (g *graph) refsOf(m int32) []int32 {
	r := &g.manifests[m]
	return g.refs[r.refs : r.refs+r.nref]
}

// bucketBits is how many leading key bits index graph.starts: keys are
// hashes, spread evenly, so a bucket holds a few blobs and a lookup reads
// the table and one short stretch of the sorted array, not twenty places
// of it as a binary search over a million would.
const bucketBits = 16

func (g *graph) blobIndex(d []byte) int {
	k, _ := keyOf(d)
	hi := binary.BigEndian.Uint64(k[:8])
	b := hi >> (64 - bucketBits)
	lo, n := int(g.starts[b]), int(g.starts[b+1])
	for lo < n {
		m := int(uint(lo+n) >> 1)
		if cmpRec(g.blobs[m], hi, &k) < 0 {
			lo = m + 1
		} else {
			n = m
		}
	}
	if lo < len(g.blobs) && cmpRec(g.blobs[lo], hi, &k) == 0 {
		return lo
	}
	return -1
}

func (g *graph) blobDigest(i int) digest.Digest {
	k := g.blobs[i].key
	if d, ok := g.other[k]; ok {
		return d
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(k[:]))
}

func (ix *Index) loadGraph() (*graph, error) {
	g := &graph{other: map[blobKey]digest.Digest{}}
	err := ix.db.View(func(tx *bolt.Tx) error {
		bb := tx.Bucket(bucketBlobs)
		g.blobs = make([]blobRec, 0, ix.Totals().Blobs)
		n := 0
		err := bb.ForEach(func(k, v []byte) error {
			if n++; n%(1<<16) == 0 {
				releaseMapping(ix.db, tx) // read once: the pass needs none of it again
			}
			e, err := decodeBlob(v)
			if err != nil {
				return err
			}
			key, plain := keyOf(k)
			if !plain {
				g.other[key] = digest.Digest(k)
			}
			g.blobs = append(g.blobs, blobRec{hi: binary.BigEndian.Uint64(key[:8]), key: key, size: e.Size, access: unixNano(e.LastAccess)})
			g.total += e.Size
			return nil
		})
		if err != nil {
			return err
		}
		g.sortBlobs()
		mb := tx.Bucket(bucketManifests)
		ids := map[string]int32{}
		// A digest with both a blob and a manifest entry (a manifest first
		// fetched through /blobs/) is referenced as both: its manifest's
		// references are then part of the image that references it.
		both := map[int32]int32{}
		err = mb.ForEach(func(k, _ []byte) error {
			if len(ids)%(1<<15) == 0 {
				releaseMapping(ix.db, tx)
			}
			if i := g.blobIndex(k); i >= 0 {
				both[int32(i)] = int32(len(ids))
			}
			ids[string(k)] = int32(len(ids))
			return nil
		})
		if err != nil {
			return err
		}
		g.manifests = make([]manifestRec, len(ids))
		g.refs = make([]int32, 0, 12*len(ids))
		addRef := func(r []byte) { // mostly blobs: looked up first
			if i := g.blobIndex(r); i >= 0 {
				g.refs = append(g.refs, int32(i))
				if j, ok := both[int32(i)]; ok {
					g.refs = append(g.refs, -1-j)
				}
			} else if j, ok := ids[string(r)]; ok {
				g.refs = append(g.refs, -1-j)
			} // else not stored: being filled, or never fetched
		}
		n = 0
		return mb.ForEach(func(k, v []byte) error {
			if n++; n%(1<<15) == 0 { // manifest pages are larger: released more often
				releaseMapping(ix.db, tx)
			}
			m := &g.manifests[ids[string(k)]]
			m.d, m.refs = digest.Digest(k), int32(len(g.refs))
			// The references are read in place (no digest strings: 1.2
			// million of them were 100 MB of garbage per pass).
			_, size, at, ok := scanManifest(v, addRef)
			if !ok {
				g.refs = g.refs[:m.refs]
				e, err := decodeManifest(v)
				if err != nil {
					return err
				}
				size, at = e.Size, e.LastAccess
				for _, r := range e.Refs {
					addRef([]byte(r))
				}
			}
			m.size, m.access, m.nref = size, unixNano(at), int32(len(g.refs))-m.refs
			g.total += size
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	g.markParents()
	return g, nil
}

// sortBlobs sorts the blobs by key and builds the bucket table.
func (g *graph) sortBlobs() {
	slices.SortFunc(g.blobs, func(a, b blobRec) int { return cmpRec(a, b.hi, &b.key) })
	g.starts = make([]int32, 1<<bucketBits+1)
	for i := range g.blobs {
		g.starts[g.blobs[i].hi>>(64-bucketBits)+1]++
	}
	for b := 1; b < len(g.starts); b++ {
		g.starts[b] += g.starts[b-1]
	}
}

// markParents marks the manifests another stored manifest references.
func (g *graph) markParents() {
	for i := range g.manifests {
		for _, r := range g.refsOf(int32(i)) {
			if r < 0 && int(-1-r) != i {
				g.manifests[-1-r].parent = true
			}
		}
	}
}

// graphFrom is the graph of any Backend, read through its interface (a
// shared index's entries; bbolt reads its pages directly, loadGraph). A
// scan that gives an entry twice (Redis HSCAN) counts it once.
func graphFrom(ctx context.Context, ix Backend) (*graph, error) {
	g := &graph{other: map[blobKey]digest.Digest{}}
	seen := map[digest.Digest]bool{}
	err := ix.Blobs(ctx, func(d digest.Digest, e BlobEntry) error {
		if seen[d] {
			return nil
		}
		seen[d] = true
		key, plain := keyOf([]byte(d))
		if !plain {
			g.other[key] = d
		}
		g.blobs = append(g.blobs, blobRec{hi: binary.BigEndian.Uint64(key[:8]), key: key, size: e.Size, access: unixNano(e.LastAccess)})
		g.total += e.Size
		return nil
	})
	if err != nil {
		return nil, err
	}
	g.sortBlobs()
	type entry struct {
		d digest.Digest
		e ManifestEntry
	}
	var ms []entry
	ids := map[digest.Digest]int32{}
	err = ix.Manifests(ctx, func(d digest.Digest, e ManifestEntry) error {
		if _, ok := ids[d]; !ok {
			ids[d] = int32(len(ms))
			ms = append(ms, entry{d, e})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	both := map[int32]int32{} // a digest with a blob and a manifest entry: see loadGraph
	for d, id := range ids {
		if i := g.blobIndex([]byte(d)); i >= 0 {
			both[int32(i)] = id
		}
	}
	g.manifests = make([]manifestRec, len(ms))
	for id, m := range ms {
		r := &g.manifests[id]
		r.d, r.refs, r.size, r.access = m.d, int32(len(g.refs)), m.e.Size, unixNano(m.e.LastAccess)
		for _, ref := range m.e.Refs {
			if i := g.blobIndex([]byte(ref)); i >= 0 {
				g.refs = append(g.refs, int32(i))
				if j, ok := both[int32(i)]; ok {
					g.refs = append(g.refs, -1-j)
				}
			} else if j, ok := ids[ref]; ok {
				g.refs = append(g.refs, -1-j)
			}
		}
		r.nref = int32(len(g.refs)) - r.refs
		g.total += m.e.Size
	}
	g.markParents()
	return g, nil
}

// image is a root of the graph: a manifest (>= 0) or an orphan blob
// (-1-i).
type image struct {
	root      int32
	lastUse   int64
	protected bool
	pinned    bool
	maxAge    time.Duration // a rule's max_age, when hasAge
	hasAge    bool
}

// pass is one plan's bookkeeping over a graph: how many images hold each
// blob and manifest.
type pass struct {
	g         *graph
	blobUsers []int32
	manUsers  []int32
	blobSeen  []int32 // image stamp, for one walk at a time
	manSeen   []int32
	stamp     int32
	images    []image
	total     int64
}

func newPass(g *graph, p EvictPolicy) *pass {
	protected := p.Protected
	nb, nm := len(g.blobs), len(g.manifests)
	ps := &pass{g: g, blobUsers: make([]int32, nb), manUsers: make([]int32, nm),
		blobSeen: make([]int32, nb), manSeen: make([]int32, nm), total: g.total}
	for i := range g.manifests {
		if g.manifests[i].parent {
			continue
		}
		img := image{root: int32(i)}
		var blobUse int64
		ps.walk(int32(i), func(x int32) {
			if x >= 0 {
				ps.blobUsers[x]++
				blobUse = max(blobUse, g.blobs[x].access)
				return
			}
			m := &g.manifests[-1-x]
			ps.manUsers[-1-x]++
			img.lastUse = max(img.lastUse, m.access)
			img.protected = img.protected || len(protected) > 0 && protected[m.d]
			img.pinned = img.pinned || len(p.Pinned) > 0 && p.Pinned[m.d]
			if a, ok := p.MaxAgeOf[m.d]; ok && (!img.hasAge || a > img.maxAge) {
				img.maxAge, img.hasAge = a, true
			}
		})
		if img.lastUse == 0 {
			img.lastUse = blobUse
		}
		ps.images = append(ps.images, img)
	}
	for i := range g.blobs {
		if ps.blobUsers[i] == 0 {
			ps.blobUsers[i] = 1
			img := image{root: -1 - int32(i), lastUse: g.blobs[i].access}
			img.protected = len(protected) > 0 && protected[g.blobDigest(i)]
			img.pinned = len(p.Pinned) > 0 && p.Pinned[g.blobDigest(i)]
			ps.images = append(ps.images, img)
		}
	}
	slices.SortStableFunc(ps.images, func(a, b image) int {
		if a.lastUse != b.lastUse {
			return compareInt(a.lastUse, b.lastUse)
		}
		return compareInt(int64(a.root), int64(b.root))
	})
	return ps
}

// walk calls fn for each member of the image rooted at manifest m, once
// each: -1-i for manifest i, i for blob i.
func (ps *pass) walk(m int32, fn func(member int32)) {
	ps.stamp++
	stack := []int32{m}
	ps.manSeen[m] = ps.stamp
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		fn(-1 - x)
		for _, r := range ps.g.refsOf(x) {
			if r >= 0 {
				if ps.blobSeen[r] != ps.stamp {
					ps.blobSeen[r] = ps.stamp
					fn(r)
				}
			} else if j := -1 - r; ps.manSeen[j] != ps.stamp {
				ps.manSeen[j] = ps.stamp
				stack = append(stack, j)
			}
		}
	}
}

// evict takes an image out: every member no other image holds goes into
// plan.
func (ps *pass) evict(img image, lost bool, plan *Plan) {
	g := ps.g
	ev := EvictedImage{LastUse: fromUnixNano(img.lastUse), Protected: lost}
	drop := func(d digest.Digest, size int64) {
		plan.Evict = append(plan.Evict, d)
		if lost {
			plan.LostProtected = append(plan.LostProtected, d)
		}
		ev.Bytes += size
		ps.total -= size
	}
	if img.root < 0 {
		b := -1 - img.root
		ev.Root = g.blobDigest(int(b))
		drop(ev.Root, g.blobs[b].size)
		plan.Images = append(plan.Images, ev)
		return
	}
	ev.Root, ev.Manifest = g.manifests[img.root].d, true
	ps.walk(img.root, func(x int32) {
		if x >= 0 {
			if ps.blobUsers[x]--; ps.blobUsers[x] == 0 {
				drop(g.blobDigest(int(x)), g.blobs[x].size)
			}
			return
		}
		m := -1 - x
		if ps.manUsers[m]--; ps.manUsers[m] == 0 {
			drop(g.manifests[m].d, g.manifests[m].size)
		}
	})
	plan.Images = append(plan.Images, ev)
}

// pinnedBytes sums the files the pinned images hold, each once.
func (ps *pass) pinnedBytes() int64 {
	g := ps.g
	blobs, mans := map[int32]bool{}, map[int32]bool{}
	var n int64
	for _, img := range ps.images {
		if !img.pinned {
			continue
		}
		if img.root < 0 {
			if b := -1 - img.root; !blobs[b] {
				blobs[b], n = true, n+g.blobs[b].size
			}
			continue
		}
		ps.walk(img.root, func(x int32) {
			switch {
			case x >= 0 && !blobs[x]:
				blobs[x], n = true, n+g.blobs[x].size
			case x < 0 && !mans[-1-x]:
				mans[-1-x], n = true, n+g.manifests[-1-x].size
			}
		})
	}
	return n
}

func (g *graph) plan(p EvictPolicy, now time.Time) Plan {
	ps := newPass(g, p)
	low := p.LowWater
	if low <= 0 || low > p.MaxSize {
		low = p.MaxSize * 9 / 10
	}
	over := p.MaxSize > 0 && ps.total > p.MaxSize
	var plan Plan
	if len(p.Pinned) > 0 {
		plan.PinnedBytes = ps.pinnedBytes()
	}
	taken := make([]bool, len(ps.images))
	for k, img := range ps.images {
		if img.protected || img.pinned {
			continue
		}
		maxAge := p.MaxAge
		if img.hasAge {
			maxAge = img.maxAge
		}
		old := maxAge > 0 && now.Sub(time.Unix(0, img.lastUse)) > maxAge
		if !old && !(over && ps.total > low) {
			continue
		}
		taken[k] = true
		ps.evict(img, false, &plan)
	}
	for k, img := range ps.images { // the cap wins over the offline copy
		if !(p.MaxSize > 0 && ps.total > p.MaxSize) {
			break
		}
		if !taken[k] && !img.pinned { // pinned: never, even when the cap cannot be met
			ps.evict(img, true, &plan)
		}
	}
	plan.CapUnmet = p.MaxSize > 0 && ps.total > p.MaxSize
	return plan
}

// ImagePlan is what removing the image whose top manifest is root deletes:
// its manifests and the blobs no other image references. A manifest that
// another stored manifest references (a platform manifest of a kept index)
// is not a top manifest: the plan is empty, and ok false.
func (ix *Index) ImagePlan(_ context.Context, root digest.Digest) (plan Plan, ok bool, err error) {
	g, err := ix.loadGraph()
	if err != nil {
		return Plan{}, false, err
	}
	defer ix.releasePages()
	return g.imagePlan(root)
}

func (g *graph) imagePlan(root digest.Digest) (plan Plan, ok bool, err error) {
	ps := newPass(g, EvictPolicy{})
	for _, img := range ps.images {
		if img.root >= 0 && g.manifests[img.root].d == root {
			ps.evict(img, false, &plan)
			return plan, true, nil
		}
	}
	return Plan{}, false, nil
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ReleasePages drops the index file's pages from the process's resident
// set after a caller's pass over many entries (see releasePages).
func (ix *Index) ReleasePages() { ix.releasePages() }

// releasePages drops the index file's pages from this process's resident
// set after a pass that read all of it: bbolt maps the file read-only and
// shared, so they stay in the page cache and fault back in when read. The
// read transaction holds bbolt's mapping in place meanwhile.
func (ix *Index) releasePages() {
	_ = ix.db.View(func(tx *bolt.Tx) error {
		releaseMapping(ix.db, tx)
		return nil
	})
}

// releaseMapping is releasePages within the read transaction tx of db.
func releaseMapping(db *bolt.DB, tx *bolt.Tx) {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, db.Info().Data, uintptr(tx.Size()), syscall.MADV_DONTNEED)
}

// Reachable returns every digest reachable from the tags keep selects:
// their manifests, platform manifests and blobs.
func (ix *Index) Reachable(ctx context.Context, keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error) {
	return ReachableFrom(ctx, ix, keep)
}

// ReachableFrom is Reachable over any Backend's entries.
func ReachableFrom(ctx context.Context, ix Backend, keep func(upstream string, e TagEntry) bool) (map[digest.Digest]bool, error) {
	var roots []digest.Digest
	err := ix.Tags(ctx, func(up, _, _ string, e TagEntry) error {
		if keep(up, e) {
			roots = append(roots, e.Digest)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return reachFrom(ctx, ix, roots)
}

// reachFrom returns roots and every digest their stored manifests
// reference, recursively.
func reachFrom(ctx context.Context, ix Backend, roots []digest.Digest) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	for len(roots) > 0 {
		d := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		if out[d] {
			continue
		}
		out[d] = true
		m, ok, err := ix.Manifest(ctx, d)
		if err != nil {
			return nil, err
		}
		if ok {
			roots = append(roots, m.Refs...)
		}
	}
	return out, nil
}

// PlanEviction is EvictionPlan over any Backend's entries: the same plan,
// by image, with layers shared by a kept image kept, read through the
// Backend's scans (a shared index: see docs/scaling.md).
func PlanEviction(ctx context.Context, ix Backend, p EvictPolicy, now time.Time) (Plan, error) {
	if err := ix.Flush(ctx); err != nil {
		return Plan{}, err
	}
	g, err := graphFrom(ctx, ix)
	if err != nil {
		return Plan{}, err
	}
	return g.plan(p, now), nil
}

// ImagePlanOf is ImagePlan over any Backend's entries.
func ImagePlanOf(ctx context.Context, ix Backend, root digest.Digest) (Plan, bool, error) {
	g, err := graphFrom(ctx, ix)
	if err != nil {
		return Plan{}, false, err
	}
	return g.imagePlan(root)
}
