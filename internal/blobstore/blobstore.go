// Package blobstore defines where regcache keeps content: a content-addressed
// store of blobs and manifests, keyed by digest only. Implementations live in
// subpackages (disk) and are all checked by blobstoretest.Run.
package blobstore

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"
)

// Sentinel errors. Check them with errors.Is.
var (
	// ErrNotFound: the store holds no committed content for the digest.
	ErrNotFound = errors.New("blob not found")
	// ErrDigestMismatch: the bytes written do not hash to the digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch: the number of bytes written is not the expected size.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrUnavailable: the store could not be reached in time (an object
	// store that is down or partitioned away); whether it holds the
	// digest is not known.
	ErrUnavailable = errors.New("the store is unreachable")
)

// Store is content-addressed storage. Content becomes visible only through a
// Writer's successful Commit, after its digest and size were verified, so a
// reader never sees partial or wrong bytes.
type Store interface {
	// Stat returns the size of committed content, or ErrNotFound, or
	// ErrUnavailable when a remote store did not answer in time.
	Stat(ctx context.Context, d digest.Digest) (int64, error)
	// Open returns committed content for reading, or ErrNotFound, or
	// ErrUnavailable when a remote store did not answer in time.
	Open(ctx context.Context, d digest.Digest) (Blob, error)
	// Create starts writing content that should hash to d. Nothing is
	// visible until Commit succeeds.
	Create(ctx context.Context, d digest.Digest) (Writer, error)
	// Delete removes committed content; deleting absent content is no error.
	Delete(ctx context.Context, d digest.Digest) error
	// Walk calls fn for every committed blob, in no particular order.
	Walk(ctx context.Context, fn func(d digest.Digest, size int64) error) error
}

// WriterAt is a Writer that also takes bytes ahead of the ones written in
// order: a fill over several connections lands each range at its offset.
// WriteAt puts bytes at off >= Written() without counting or hashing them,
// and may run beside other WriteAts and beside Write or Advance; Advance
// counts and hashes the next n bytes, which WriteAt put in place, as Write
// would have. Write and Advance are called from one goroutine at a time.
type WriterAt interface {
	Writer
	WriteAt(p []byte, off int64) (int, error)
	Advance(n int64) error
}

// Blob is committed content.
type Blob interface {
	io.ReadSeekCloser
	io.ReaderAt
	Size() int64
}

// Writer receives content in order. It can be read back while it grows
// (ReadAt of bytes already written), which is how several clients stream
// one upstream fetch.
type Writer interface {
	io.Writer
	io.ReaderAt
	// Written is the number of bytes written so far.
	Written() int64
	// Verify checks, without committing, that the bytes written hash to
	// the digest given to Create and, when size >= 0, that there are size
	// of them. No Write may follow. On ErrDigestMismatch or
	// ErrSizeMismatch the bytes are discarded.
	Verify(size int64) error
	// Commit verifies that the bytes written hash to the digest given to
	// Create and, when size >= 0, that there are size of them; then makes
	// them durable and visible. On ErrDigestMismatch or ErrSizeMismatch the
	// bytes are discarded. ReadAt keeps working after Commit until Close.
	Commit(ctx context.Context, size int64) error
	// Cancel discards what was written. It is safe after Commit (no-op).
	Cancel() error
	// Close releases the writer's resources; an uncommitted write is
	// cancelled.
	Close() error
}
