package cacheindex

import (
	"context"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Batch is many entries for one transaction: a load of a generated index
// (the scale benchmark) or a rebuild. Entries sorted by digest (tags by
// upstream, repository, tag) write fastest.
type Batch struct {
	Blobs     []BatchBlob
	Manifests []BatchManifest
	Tags      []BatchTag
}

// BatchBlob is a blob entry of a Batch.
type BatchBlob struct {
	Digest digest.Digest
	Entry  BlobEntry
}

// BatchManifest is a manifest entry of a Batch; with Upstream set, the
// repository holds it and what it references, and the upstream is its
// origin, as PutManifest and PutOrigin record.
type BatchManifest struct {
	Upstream, Repo string
	Digest         digest.Digest
	Entry          ManifestEntry
}

// BatchTag is a tag entry of a Batch.
type BatchTag struct {
	Upstream, Repo, Tag string
	Entry               TagEntry
}

// PutBatch writes a Batch in one transaction, keeping the totals.
func (ix *Index) PutBatch(_ context.Context, b Batch) error {
	var delta Totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		delta = Totals{}
		blobs, holds, origins := tx.Bucket(bucketBlobs), tx.Bucket(bucketHolds), tx.Bucket(bucketOrigins)
		for _, x := range b.Blobs {
			if old := blobs.Get([]byte(x.Digest)); old != nil {
				e, _ := decodeBlob(old)
				delta.BlobBytes -= e.Size
				delta.Blobs--
			}
			delta.Blobs++
			delta.BlobBytes += x.Entry.Size
			if err := blobs.Put([]byte(x.Digest), encodeBlob(x.Entry)); err != nil {
				return err
			}
		}
		for _, x := range b.Manifests {
			d := manifestDelta(tx, x.Digest, x.Entry.Size)
			delta.Manifests += d.Manifests
			delta.ManifestBytes += d.ManifestBytes
			raw, err := json.Marshal(x.Entry)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketManifests).Put([]byte(x.Digest), raw); err != nil {
				return err
			}
			if x.Upstream == "" {
				continue
			}
			for _, ref := range append([]digest.Digest{x.Digest}, x.Entry.Refs...) {
				if err := holds.Put(holdKey(x.Upstream, x.Repo, ref), []byte{1}); err != nil {
					return err
				}
				if err := origins.Put([]byte(x.Upstream+"\x00"+ref.String()), []byte{1}); err != nil {
					return err
				}
			}
		}
		tags := tx.Bucket(bucketTags)
		for _, x := range b.Tags {
			k := tagKey(x.Upstream, x.Repo, x.Tag)
			if tags.Get(k) == nil {
				delta.Tags++
			}
			if err := put(tx, bucketTags, k, x.Entry); err != nil {
				return err
			}
		}
		return nil
	})
	return ix.totals.apply(delta, err)
}
