package cacheindex

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// NextBlob returns the first blob entry whose digest sorts after after
// ("" for the first of all), and false when there is none: a walk that
// can stop and resume anywhere (the background scrub's).
func (ix *Index) NextBlob(_ context.Context, after digest.Digest) (digest.Digest, BlobEntry, bool, error) {
	var d digest.Digest
	var e BlobEntry
	var ok bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketBlobs).Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && after != "" && bytes.Equal(k, []byte(after)) {
			k, v = c.Next()
		}
		if k == nil {
			return nil
		}
		var err error
		e, err = decodeBlob(v)
		d, ok = digest.Digest(k), err == nil
		return err
	})
	return d, e, ok, err
}

// RepoTags calls fn for every tag entry of one upstream (repo "" for all
// its repositories) or of every upstream (upstream ""), reading only those
// entries: tags are keyed by upstream, then repository.
func (ix *Index) RepoTags(ctx context.Context, upstream, repo string, fn func(upstream, repo, tag string, e TagEntry) error) error {
	if upstream == "" {
		return ix.Tags(ctx, fn)
	}
	prefix := []byte(upstream + "\x00")
	if repo != "" {
		prefix = []byte(upstream + "\x00" + repo + "\x00")
	}
	return ix.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTags).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var e TagEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			parts := splitKey(k)
			if err := fn(parts[0], parts[1], parts[2], e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Manifests calls fn for every manifest entry.
func (ix *Index) Manifests(_ context.Context, fn func(digest.Digest, ManifestEntry) error) error {
	return ix.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketManifests).ForEach(func(k, v []byte) error {
			e, err := decodeManifest(v)
			if err != nil {
				return err
			}
			return fn(digest.Digest(k), e)
		})
	})
}
