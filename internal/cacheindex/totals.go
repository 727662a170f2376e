package cacheindex

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Totals are the index's running counts, kept in memory as entries are
// written (counted once at Open, in the pass that checks every entry), so
// no caller scans the index to learn the cache's size.
type Totals struct {
	Blobs         int64 `json:"blobs"`
	BlobBytes     int64 `json:"blobBytes"`
	Manifests     int64 `json:"manifests"`
	ManifestBytes int64 `json:"manifestBytes"`
	Tags          int64 `json:"tags"`
}

// Bytes is what the store's files take: blobs and manifests.
func (t Totals) Bytes() int64 { return t.BlobBytes + t.ManifestBytes }

type totals = Totals

// counters guards the index's Totals.
type counters struct {
	mu sync.Mutex
	t  Totals
}

func (c *counters) set(t Totals) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// apply adds delta once its transaction committed (err nil), and returns
// err.
func (c *counters) apply(delta Totals, err error) error {
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.t.Blobs += delta.Blobs
	c.t.BlobBytes += delta.BlobBytes
	c.t.Manifests += delta.Manifests
	c.t.ManifestBytes += delta.ManifestBytes
	c.t.Tags += delta.Tags
	c.mu.Unlock()
	return nil
}

// Totals returns the index's running counts.
func (ix *Index) Totals() Totals {
	ix.totals.mu.Lock()
	defer ix.totals.mu.Unlock()
	return ix.totals.t
}

// manifestDelta is what writing a manifest entry of size bytes for d
// changes in the totals, read in the writing transaction.
func manifestDelta(tx *bolt.Tx, d digest.Digest, size int64) Totals {
	raw := tx.Bucket(bucketManifests).Get([]byte(d))
	if raw == nil {
		return Totals{Manifests: 1, ManifestBytes: size}
	}
	old, _ := decodeManifest(raw)
	return Totals{ManifestBytes: size - old.Size}
}

// blobValueSize is the length of a blob entry in the index's binary form:
// size, created and last access (Unix nanoseconds), big-endian. A million
// blobs are decoded at every Open and every eviction pass, so they are not
// JSON; entries written as JSON by earlier versions are still read.
const blobValueSize = 24

func encodeBlob(e BlobEntry) []byte {
	var b [blobValueSize]byte
	binary.BigEndian.PutUint64(b[0:], uint64(e.Size))
	binary.BigEndian.PutUint64(b[8:], uint64(unixNano(e.Created)))
	binary.BigEndian.PutUint64(b[16:], uint64(unixNano(e.LastAccess)))
	return b[:]
}

func decodeBlob(v []byte) (BlobEntry, error) {
	if len(v) != blobValueSize {
		var e BlobEntry
		err := json.Unmarshal(v, &e)
		return e, err
	}
	return BlobEntry{
		Size:       int64(binary.BigEndian.Uint64(v[0:])),
		Created:    fromUnixNano(int64(binary.BigEndian.Uint64(v[8:]))),
		LastAccess: fromUnixNano(int64(binary.BigEndian.Uint64(v[16:]))),
	}, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Count totals any Backend's entries by scanning them (each digest and
// tag once, whatever a scan repeats); a shared index has no running
// totals. An error means the count is not whole.
func Count(ctx context.Context, ix Backend) (Totals, error) {
	var t Totals
	seen := map[digest.Digest]bool{}
	err := ix.Blobs(ctx, func(d digest.Digest, e BlobEntry) error {
		if !seen[d] {
			seen[d] = true
			t.Blobs++
			t.BlobBytes += e.Size
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	clear(seen)
	err = ix.Manifests(ctx, func(d digest.Digest, e ManifestEntry) error {
		if !seen[d] {
			seen[d] = true
			t.Manifests++
			t.ManifestBytes += e.Size
		}
		return nil
	})
	if err != nil {
		return t, err
	}
	tags := map[string]bool{}
	err = ix.Tags(ctx, func(up, repo, tag string, _ TagEntry) error {
		tags[up+"\x00"+repo+"\x00"+tag] = true
		return nil
	})
	t.Tags = int64(len(tags))
	return t, err
}
