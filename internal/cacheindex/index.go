// Package cacheindex records what the cache holds and how fresh it is, in an
// embedded bbolt file: for each (upstream, repository, tag) the digest and
// when it was fetched and last checked; for each manifest its media type; for
// each blob its size and last access; and which repositories are known to
// hold which digests.
//
// Access times are kept in memory and written in batches, never once per
// request.
package cacheindex

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

var (
	bucketTags      = []byte("tags")
	bucketManifests = []byte("manifests")
	bucketBlobs     = []byte("blobs")
	bucketHolds     = []byte("holds")
	// bucketOrigins records which upstreams served a digest's bytes (and
	// so could serve them again): upstream \x00 digest.
	bucketOrigins = []byte("origins")
	// bucketMeta holds the index's own state: keyClean is there while no
	// process has the index open after a clean Close.
	bucketMeta = []byte("meta")
	keyClean   = []byte("clean")
)

// TagEntry is what the index knows of a tag.
type TagEntry struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	Fetched   time.Time     `json:"fetched"` // when the digest was first seen for the tag
	Checked   time.Time     `json:"checked"` // when upstream last confirmed it
	// Source is the fallback member whose answer this is, when the
	// upstream itself did not answer; "" when it did. The upstream's own
	// answer replaces it as soon as it gives one.
	Source string `json:"source,omitempty"`
}

// ManifestEntry is what the index knows of a stored manifest.
type ManifestEntry struct {
	MediaType string          `json:"mediaType"`
	Size      int64           `json:"size"`
	Refs      []digest.Digest `json:"refs,omitempty"` // blobs and manifests it references
	// LastAccess is when it was last served (zero in indexes written
	// before it was recorded).
	LastAccess time.Time `json:"lastAccess,omitzero"`
}

// BlobEntry is what the index knows of a stored blob.
type BlobEntry struct {
	Size       int64     `json:"size"`
	Created    time.Time `json:"created"`
	LastAccess time.Time `json:"lastAccess"`
}

// Index is the bbolt-backed cache index. It is safe for concurrent use.
type Index struct {
	db  *bolt.DB
	log *slog.Logger
	now func() time.Time

	touched Touches

	totals counters

	// Clean reports whether the index was closed cleanly by the last
	// process that had it open: the store and the index agreed then, so
	// a reconciliation of the two can be skipped. It is false after a
	// crash, for a new index and for a rebuilt one.
	Clean bool

	// Damaged is where a damaged index file was moved at Open ("" if it
	// was sound), and Damage what was wrong with it. The new index is
	// empty: rebuild it from the store.
	Damaged string
	Damage  error
}

// Option configures an Index.
type Option func(*Index)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(ix *Index) { ix.log = l } }

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(ix *Index) { ix.now = now } }

// Open opens or creates the index file at path. Access times are flushed
// every flushEvery (and on Close).
func Open(path string, flushEvery time.Duration, opts ...Option) (*Index, error) {
	db, tot, err := openChecked(path)
	moved := ""
	var damage *Damage
	if err != nil && !errors.As(err, &damage) {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open index %s: %w (is another regcache using this data directory?)", path, err)
		}
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	if damage != nil {
		// A damaged index never stops the mirror: it is moved aside and
		// a new one started; the caller rebuilds it from the store.
		moved = fmt.Sprintf("%s.damaged-%d", path, time.Now().UnixNano())
		if err := os.Rename(path, moved); err != nil {
			return nil, fmt.Errorf("index %s is damaged (%v) and cannot be moved aside: %w", path, damage, err)
		}
		if db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second}); err != nil {
			return nil, fmt.Errorf("open new index %s: %w", path, err)
		}
		tot = totals{}
	}
	clean := false
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTags, bucketManifests, bucketBlobs, bucketHolds, bucketOrigins, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// The marker goes while the index is open: a crash leaves none.
		meta := tx.Bucket(bucketMeta)
		clean = meta.Get(keyClean) != nil
		return meta.Delete(keyClean)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init index %s: %w", path, err)
	}
	var damageErr error
	if damage != nil {
		damageErr = damage
	}
	ix := &Index{db: db, log: slog.New(slog.DiscardHandler), now: time.Now, Damaged: moved, Damage: damageErr, Clean: clean}
	ix.totals.set(tot)
	for _, o := range opts {
		o(ix)
	}
	ix.touched.Start(flushEvery, ix.Flush, func(err error) { ix.log.Warn("flush access times", slog.Any("error", err)) })
	return ix, nil
}

// openChecked opens the file and reads and decodes every entry of it. A
// file bbolt refuses as not a database, one shorter than its meta pages say
// (bbolt would fault reading past its end), a read or decode that fails, or
// a panic or memory fault on a bad page is reported as damage (*Damage);
// the database is then closed. Other errors (a lock held, no permission,
// out of file descriptors) are returned as they are: they say nothing of
// the file.
func openChecked(path string) (db *bolt.DB, tot totals, err error) {
	if err := checkLength(path); err != nil {
		return nil, tot, &Damage{err}
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true)) // a fault on a bad page panics, here
	defer func() {
		if p := recover(); p != nil {
			if db != nil {
				db.Close()
			}
			db, err = nil, &Damage{fmt.Errorf("bbolt panicked reading it: %v", p)}
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) || errors.Is(err, bolterrors.ErrVersionMismatch) {
		return nil, tot, &Damage{err}
	}
	if err != nil {
		return nil, tot, err
	}
	// Read every entry in this goroutine (bbolt's own Check runs in one of
	// its own, where a panic cannot be recovered) and decode the values: a
	// bad page or value fails here, not in the middle of serving. The
	// running totals come from the same pass.
	err = db.View(func(tx *bolt.Tx) error {
		n := 0
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			bucket := string(name)
			return b.ForEach(func(k, v []byte) error {
				if n++; n%(1<<16) == 0 {
					releaseMapping(db, tx) // what the pass read so far: it needs none of it again
				}
				return decodeCheck(bucket, v, &tot)
			})
		})
	})
	if err != nil {
		db.Close()
		return nil, tot, &Damage{err}
	}
	// The pass touched every page of the file's mapping; a fresh mapping
	// starts with none resident, so the server's memory holds only the
	// pages it uses from here on (the page cache keeps the rest).
	if err := db.Close(); err != nil {
		return nil, tot, err
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	return db, tot, err
}

// Damage is what was wrong with a damaged index file.
type Damage struct{ Err error }

func (d *Damage) Error() string { return "damaged index: " + d.Err.Error() }
func (d *Damage) Unwrap() error { return d.Err }

// decodeCheck decodes a value of one of the index's buckets and counts it
// in tot.
func decodeCheck(bucket string, v []byte, tot *totals) error {
	var err error
	switch bucket {
	case string(bucketTags):
		err = json.Unmarshal(v, new(TagEntry))
		tot.Tags++
	case string(bucketManifests):
		var size int64
		size, err = manifestSize(v)
		tot.Manifests++
		tot.ManifestBytes += size
	case string(bucketBlobs):
		var e BlobEntry
		e, err = decodeBlob(v)
		tot.Blobs++
		tot.BlobBytes += e.Size
	}
	if err != nil {
		return fmt.Errorf("%s entry: %w", bucket, err)
	}
	return nil
}

// checkLength refuses a file shorter than the pages its meta pages say it
// has. The two meta pages are at the start; each names the page size and
// the high-water page id.
func checkLength(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // missing: bbolt creates it; unreadable: bbolt says why
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil
	}
	var need int64
	for _, off := range []int64{0, 4096} {
		var m [64]byte
		if _, err := f.ReadAt(m[:], off); err != nil {
			continue
		}
		// page header: id u64, flags u16, count u16, overflow u32 (16 bytes);
		// then magic u32, version u32, pageSize u32, flags u32, root bucket
		// (16 bytes), freelist u64, high-water pgid u64.
		if binary.LittleEndian.Uint32(m[16:]) != 0xED0CDAED {
			continue
		}
		pageSize := int64(binary.LittleEndian.Uint32(m[24:]))
		pgid := int64(binary.LittleEndian.Uint64(m[56:]))
		if pageSize > 0 && pgid > 0 && pgid < 1<<40 {
			need = max(need, pgid*pageSize)
		}
	}
	if need > fi.Size() {
		return fmt.Errorf("the file is %d bytes, its meta pages say %d: truncated", fi.Size(), need)
	}
	return nil
}

// PutManifestEntry records a stored manifest without any repository
// holding it (a rebuild from the store knows no repositories).
func (ix *Index) PutManifestEntry(_ context.Context, d digest.Digest, e ManifestEntry) error {
	var delta totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		delta = manifestDelta(tx, d, e.Size)
		return put(tx, bucketManifests, []byte(d), e)
	})
	return ix.totals.apply(delta, err)
}

// Close flushes pending access times, marks the index closed cleanly and
// closes the file.
func (ix *Index) Close() error {
	ix.touched.Stop()
	ferr := ix.Flush(context.Background()) // bbolt ignores ctx
	var merr error
	if ferr == nil {
		merr = ix.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyClean, []byte{1}) })
	}
	return errors.Join(ferr, merr, ix.db.Close())
}

func tagKey(upstream, repo, tag string) []byte {
	return []byte(upstream + "\x00" + repo + "\x00" + tag)
}

func holdKey(upstream, repo string, d digest.Digest) []byte {
	return []byte(upstream + "\x00" + repo + "\x00" + d.String())
}

func get[T any](ix *Index, bucket, key []byte) (T, bool, error) {
	var v T
	var found bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucket).Get(key)
		if raw == nil {
			return nil
		}
		found = true
		return json.Unmarshal(raw, &v)
	})
	return v, found, err
}

func put(tx *bolt.Tx, bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, raw)
}

// Tag returns the entry for a tag, and whether there is one.
func (ix *Index) Tag(_ context.Context, upstream, repo, tag string) (TagEntry, bool, error) {
	return get[TagEntry](ix, bucketTags, tagKey(upstream, repo, tag))
}

// PutTag records a tag's entry.
func (ix *Index) PutTag(_ context.Context, upstream, repo, tag string, e TagEntry) error {
	var delta totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		k := tagKey(upstream, repo, tag)
		delta = totals{}
		if tx.Bucket(bucketTags).Get(k) == nil {
			delta.Tags = 1
		}
		return put(tx, bucketTags, k, e)
	})
	return ix.totals.apply(delta, err)
}

// Manifest returns the entry of a stored manifest.
func (ix *Index) Manifest(_ context.Context, d digest.Digest) (ManifestEntry, bool, error) {
	var e ManifestEntry
	var found bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketManifests).Get([]byte(d))
		if raw == nil {
			return nil
		}
		found = true
		var err error
		e, err = decodeManifest(raw)
		return err
	})
	return e, found, err
}

// PutManifest records a stored manifest, and that the repository holds it
// and every digest it references.
func (ix *Index) PutManifest(_ context.Context, upstream, repo string, d digest.Digest, e ManifestEntry) error {
	var delta totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		delta = manifestDelta(tx, d, e.Size)
		if err := put(tx, bucketManifests, []byte(d), e); err != nil {
			return err
		}
		for _, ref := range append([]digest.Digest{d}, e.Refs...) {
			if err := tx.Bucket(bucketHolds).Put(holdKey(upstream, repo, ref), []byte{1}); err != nil {
				return err
			}
		}
		return nil
	})
	return ix.totals.apply(delta, err)
}

// Holds reports whether the repository is known to hold the digest: one of
// its manifests references it, or the upstream served it under that name.
func (ix *Index) Holds(_ context.Context, upstream, repo string, d digest.Digest) (bool, error) {
	var ok bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketHolds).Get(holdKey(upstream, repo, d)) != nil
		return nil
	})
	return ok, err
}

// PutHolds records that the upstream served the digest under the repository.
func (ix *Index) PutHolds(_ context.Context, upstream, repo string, d digest.Digest) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHolds).Put(holdKey(upstream, repo, d), []byte{1})
	})
}

// PutOrigin records that the upstream served d's bytes (verified).
func (ix *Index) PutOrigin(_ context.Context, upstream string, d digest.Digest) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOrigins).Put([]byte(upstream+"\x00"+d.String()), []byte{1})
	})
}

// HasOrigin reports whether the upstream is known to have served d's
// bytes.
func (ix *Index) HasOrigin(_ context.Context, upstream string, d digest.Digest) (bool, error) {
	var ok bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketOrigins).Get([]byte(upstream+"\x00"+d.String())) != nil
		return nil
	})
	return ok, err
}

// Blob returns a blob's entry.
func (ix *Index) Blob(_ context.Context, d digest.Digest) (BlobEntry, bool, error) {
	var e BlobEntry
	var found bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketBlobs).Get([]byte(d))
		if raw == nil {
			return nil
		}
		found = true
		var err error
		e, err = decodeBlob(raw)
		return err
	})
	return e, found, err
}

// PutBlob records a committed blob of the given size.
func (ix *Index) PutBlob(_ context.Context, d digest.Digest, size int64) error {
	now := ix.now()
	var delta totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketBlobs)
		delta = totals{Blobs: 1, BlobBytes: size}
		if old := b.Get([]byte(d)); old != nil {
			e, _ := decodeBlob(old)
			delta = totals{BlobBytes: size - e.Size}
		}
		return b.Put([]byte(d), encodeBlob(BlobEntry{Size: size, Created: now, LastAccess: now}))
	})
	return ix.totals.apply(delta, err)
}

// DeleteBlob forgets a blob or a manifest.
func (ix *Index) DeleteBlob(ctx context.Context, d digest.Digest) error {
	_, err := ix.DeleteBlobs(ctx, []digest.Digest{d})
	return err
}

// DeleteBlobs forgets blobs and manifests, in one transaction, and returns
// the bytes their entries recorded.
func (ix *Index) DeleteBlobs(_ context.Context, ds []digest.Digest) (int64, error) {
	var delta totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		delta = totals{}
		blobs, manifests := tx.Bucket(bucketBlobs), tx.Bucket(bucketManifests)
		for _, d := range ds {
			if raw := blobs.Get([]byte(d)); raw != nil {
				e, _ := decodeBlob(raw)
				delta.Blobs--
				delta.BlobBytes -= e.Size
				if err := blobs.Delete([]byte(d)); err != nil {
					return err
				}
			}
			if raw := manifests.Get([]byte(d)); raw != nil {
				e, _ := decodeManifest(raw)
				delta.Manifests--
				delta.ManifestBytes -= e.Size
				if err := manifests.Delete([]byte(d)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return -(delta.BlobBytes + delta.ManifestBytes), ix.totals.apply(delta, err)
}

// Touch records an access to d. It is held in memory until the next flush
// (no I/O, so no ctx).
func (ix *Index) Touch(d digest.Digest) { ix.touched.Add(ix.now(), d) }

// TouchAll is Touch of several digests at once.
func (ix *Index) TouchAll(ds []digest.Digest) { ix.touched.Add(ix.now(), ds...) }

// Flush writes pending access times in one transaction. On failure they
// are kept for the next flush. The methods of *Index ignore ctx: a bbolt
// transaction is local and short.
func (ix *Index) Flush(_ context.Context) error {
	batch := ix.touched.Take()
	if len(batch) == 0 {
		return nil
	}
	err := ix.db.Update(func(tx *bolt.Tx) error {
		b, mb := tx.Bucket(bucketBlobs), tx.Bucket(bucketManifests)
		for d, at := range batch {
			raw := b.Get([]byte(d))
			if raw == nil {
				if err := touchManifest(tx, mb, d, at); err != nil {
					return err
				}
				continue
			}
			e, err := decodeBlob(raw)
			if err != nil {
				return err
			}
			if !at.After(e.LastAccess) {
				continue
			}
			e.LastAccess = at
			if err := b.Put([]byte(d), encodeBlob(e)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		ix.touched.Keep(batch)
	}
	return err
}

// touchManifest records an access to a manifest, if d is one (else it
// was evicted since it was read).
func touchManifest(tx *bolt.Tx, mb *bolt.Bucket, d digest.Digest, at time.Time) error {
	raw := mb.Get([]byte(d))
	if raw == nil {
		return nil
	}
	e, err := decodeManifest(raw)
	if err != nil {
		return err
	}
	if !at.After(e.LastAccess) {
		return nil
	}
	e.LastAccess = at
	return put(tx, bucketManifests, []byte(d), e)
}

// Blobs calls fn for every blob entry.
func (ix *Index) Blobs(_ context.Context, fn func(digest.Digest, BlobEntry) error) error {
	return ix.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketBlobs).ForEach(func(k, v []byte) error {
			e, err := decodeBlob(v)
			if err != nil {
				return err
			}
			return fn(digest.Digest(k), e)
		})
	})
}

// Tags calls fn for every tag entry.
func (ix *Index) Tags(_ context.Context, fn func(upstream, repo, tag string, e TagEntry) error) error {
	return ix.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTags).ForEach(func(k, v []byte) error {
			var e TagEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			parts := splitKey(k)
			return fn(parts[0], parts[1], parts[2], e)
		})
	})
}

func splitKey(k []byte) [3]string {
	var out [3]string
	i := 0
	start := 0
	for j, c := range k {
		if c == 0 && i < 2 {
			out[i] = string(k[start:j])
			i++
			start = j + 1
		}
	}
	out[i] = string(k[start:])
	return out
}

// DeleteTag forgets a tag; the next pull asks the upstream again.
func (ix *Index) DeleteTag(_ context.Context, upstream, repo, tag string) error {
	var delta totals
	err := ix.db.Update(func(tx *bolt.Tx) error {
		k := tagKey(upstream, repo, tag)
		delta = totals{}
		if tx.Bucket(bucketTags).Get(k) != nil {
			delta.Tags = -1
		}
		return tx.Bucket(bucketTags).Delete(k)
	})
	return ix.totals.apply(delta, err)
}
