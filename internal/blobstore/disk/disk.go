// Package disk is a blobstore.Store on a local filesystem: one file per
// digest under <root>/blobs/<algorithm>/<first two hex>/<hex>, written to
// <root>/tmp on the same filesystem, verified, fsynced and renamed into place.
package disk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
)

// Store is a blobstore.Store on local disk.
type Store struct {
	root string
}

var _ blobstore.Store = (*Store)(nil)

// New opens (creating if needed) a store rooted at dir, and removes
// temporary files a crash may have left behind.
func New(dir string) (*Store, error) {
	s := &Store{root: dir}
	for _, d := range []string{s.blobDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
	}
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return nil, fmt.Errorf("read store temp directory: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return nil, fmt.Errorf("remove stale temporary file: %w", err)
		}
	}
	return s, nil
}

// Root is the directory the store lives in.
func (s *Store) Root() string { return s.root }

func (s *Store) blobDir() string { return filepath.Join(s.root, "blobs") }
func (s *Store) tmpDir() string  { return filepath.Join(s.root, "tmp") }

// path builds a file path from a digest only. Callers pass validated
// digests; Validate is checked again so no string can escape the root.
func (s *Store) path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob path: %w", err)
	}
	enc := d.Encoded()
	return filepath.Join(s.blobDir(), string(d.Algorithm()), enc[:2], enc), nil
}

// Stat implements blobstore.Store.
func (s *Store) Stat(_ context.Context, d digest.Digest) (int64, error) {
	p, err := s.path(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, blobstore.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return fi.Size(), nil
}

// Open implements blobstore.Store. The result is an *os.File underneath, so
// http.ServeContent can use sendfile.
func (s *Store) Open(_ context.Context, d digest.Digest) (blobstore.Blob, error) {
	p, err := s.path(d)
	if err != nil {
		return nil, err
	}
	f, err := openRead(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, blobstore.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return &File{File: f, size: fi.Size()}, nil
}

// File is committed content on disk.
type File struct {
	*os.File
	size int64
}

// Size is the content's length.
func (f *File) Size() int64 { return f.size }

// OSFile is the open file itself, so HTTP servers can use sendfile(2).
func (f *File) OSFile() *os.File { return f.File }

// Delete implements blobstore.Store.
func (s *Store) Delete(_ context.Context, d digest.Digest) error {
	p, err := s.path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk implements blobstore.Store. Files whose names are not a valid digest
// of their directory's algorithm are skipped.
func (s *Store) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	return filepath.WalkDir(s.blobDir(), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return ctx.Err()
		}
		alg := filepath.Base(filepath.Dir(filepath.Dir(p)))
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), e.Name())
		if d.Validate() != nil {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		return fn(d, fi.Size())
	})
}

// Verify re-reads committed content and checks it hashes to its digest. A
// file that does not is moved to the quarantine directory (Quarantine) and
// reported as blobstore.ErrDigestMismatch.
func (s *Store) Verify(ctx context.Context, d digest.Digest) error { return s.VerifyPaced(ctx, d, nil) }

// VerifyPaced is Verify calling pace, if not nil, after each chunk read
// with the chunk's size: a background scrub waits there to bound its rate.
// An error from pace stops the verification and is returned.
func (s *Store) VerifyPaced(ctx context.Context, d digest.Digest, pace func(ctx context.Context, n int) error) error {
	b, err := s.Open(ctx, d)
	if err != nil {
		return err
	}
	v := d.Verifier()
	var dst io.Writer = v
	if pace != nil {
		dst = pacedWriter{ctx: ctx, w: v, pace: pace}
	}
	_, err = copyCtx(ctx, dst, b)
	b.Close()
	if err != nil {
		return fmt.Errorf("verify blob %s: %w", d, err)
	}
	if !v.Verified() {
		if _, err := s.Quarantine(ctx, d); err != nil {
			return err
		}
		return fmt.Errorf("verify blob %s: %w", d, blobstore.ErrDigestMismatch)
	}
	return nil
}

type pacedWriter struct {
	ctx  context.Context
	w    io.Writer
	pace func(context.Context, int) error
}

func (p pacedWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if err != nil {
		return n, err
	}
	return n, p.pace(p.ctx, n)
}

// QuarantineDir is where damaged files go: out of the store (no request
// finds them), kept for a look. Nothing reads them; delete them at will.
func (s *Store) QuarantineDir() string { return filepath.Join(s.root, "quarantine") }

// Quarantine moves d's committed file out of the store into QuarantineDir,
// named <algorithm>-<hex>, and returns its new path. A file already gone
// is no error (path "").
func (s *Store) Quarantine(_ context.Context, d digest.Digest) (string, error) {
	p, err := s.path(d)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(s.QuarantineDir(), 0o755); err != nil {
		return "", fmt.Errorf("quarantine blob %s: %w", d, err)
	}
	to := filepath.Join(s.QuarantineDir(), string(d.Algorithm())+"-"+d.Encoded())
	if err := os.Rename(p, to); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		return "", fmt.Errorf("quarantine blob %s: %w", d, err)
	}
	return to, nil
}

// Create implements blobstore.Store.
func (s *Store) Create(_ context.Context, d digest.Digest) (blobstore.Writer, error) {
	final, err := s.path(d)
	if err != nil {
		return nil, err
	}
	if !d.Algorithm().Available() {
		return nil, fmt.Errorf("create blob %s: algorithm not available", d)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(s.tmpDir(), d.Encoded()[:16]+"-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create blob %s: %w", d, err)
	}
	w := &writer{f: f, tmp: tmp, final: final, want: d, h: d.Algorithm().Hash(),
		queue: make(chan []byte, hashBuffers), free: make(chan []byte, hashBuffers+2), hashed: make(chan struct{})}
	go w.hashLoop()
	return w, nil
}

// Hashing runs beside writing: Write puts the bytes in the file and hands a
// copy to a hashing goroutine, so on a machine with two cores a fill's
// network reads and file writes overlap with SHA-256. The queue is bounded
// (hashBuffers × up to hashChunk bytes per writer), so memory stays small:
// a writer allocates at most hashBuffers+2 buffers (the queue's, the one
// being hashed and the one being filled) and then only recycles them, so
// a fill allocates nothing per chunk.
const (
	hashBuffers = 8
	hashChunk   = 256 << 10
)

var _ blobstore.WriterAt = (*writer)(nil)

type writer struct {
	f     *os.File
	tmp   string
	final string
	want  digest.Digest

	h      hash.Hash     // owned by hashLoop until hashed is closed
	queue  chan []byte   // bytes to hash, in order
	free   chan []byte   // recycled buffers (room for every one allocated)
	bufs   int           // buffers allocated, at most cap(free)
	hashed chan struct{} // closed when hashLoop has hashed everything queued

	mu        sync.Mutex
	n         int64
	stopped   bool // queue closed
	verified  bool
	committed bool
	cancelled bool
}

func (w *writer) hashLoop() {
	defer close(w.hashed)
	for b := range w.queue {
		w.h.Write(b)
		w.free <- b[:cap(b)] // never blocks: free has room for every buffer
	}
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	stopped := w.stopped
	w.mu.Unlock()
	if stopped {
		return 0, errors.New("write after commit or cancel")
	}
	// At the count, not the file's offset: Advance moves the count
	// without writing.
	n, err := w.f.WriteAt(p, w.Written())
	for rest := p[:n]; len(rest) > 0; {
		b := w.hashBuffer()
		m := copy(b, rest)
		w.queue <- b[:m]
		rest = rest[m:]
	}
	w.mu.Lock()
	w.n += int64(n)
	w.mu.Unlock()
	return n, err
}

// hashBuffer is a free buffer for the hash queue, waiting for one when
// all are allocated and the hash is behind.
func (w *writer) hashBuffer() []byte { return w.hashBufferUpTo(cap(w.free)) }

// hashBufferUpTo is hashBuffer allocating no more than limit buffers in
// all (and never more than hashBuffer would).
func (w *writer) hashBufferUpTo(limit int) []byte {
	select {
	case b := <-w.free:
		return b
	default:
	}
	if w.bufs < min(limit, cap(w.free)) {
		w.bufs++
		return make([]byte, hashChunk)
	}
	return <-w.free
}

// advanceBuffers bounds the buffers Advance keeps in the hash queue: it
// reads bytes that already landed in the file, from the page cache, far
// faster than SHA-256 takes them, so more would only wait in memory (16
// segmented fills at once held 2.5 MiB each with the Write path's bound:
// the whole run's peak RSS of bench/compare.sh went from 33 to 56 MiB).
const advanceBuffers = 3

// WriteAt lands bytes ahead of those written in order (blobstore.WriterAt).
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	w.mu.Lock()
	stopped, n := w.stopped, w.n
	w.mu.Unlock()
	switch {
	case stopped:
		return 0, errors.New("write after commit or cancel")
	case off < n:
		return 0, fmt.Errorf("write at %d, inside the %d bytes written in order", off, n)
	}
	return w.f.WriteAt(p, off)
}

// Advance hashes and counts the next n bytes, read back from the file
// where WriteAt put them (blobstore.WriterAt).
func (w *writer) Advance(n int64) error {
	w.mu.Lock()
	stopped := w.stopped
	w.mu.Unlock()
	if stopped {
		return errors.New("advance after commit or cancel")
	}
	for n > 0 {
		b := w.hashBufferUpTo(advanceBuffers)
		m := int(min(n, int64(len(b))))
		off := w.Written()
		if _, err := w.f.ReadAt(b[:m], off); err != nil {
			w.free <- b
			return fmt.Errorf("read back bytes %d-%d: %w", off, off+int64(m)-1, err)
		}
		w.queue <- b[:m]
		w.mu.Lock()
		w.n += int64(m)
		w.mu.Unlock()
		n -= int64(m)
	}
	return nil
}

func (w *writer) ReadAt(p []byte, off int64) (int, error) { return w.f.ReadAt(p, off) }

// Reopen opens the bytes being written once more, read-only, with an
// offset of its own: through /proc/self/fd, so it works however the file
// is renamed or removed meanwhile. HTTP servers can sendfile(2) from it.
func (w *writer) Reopen() (*os.File, error) {
	return os.Open(fmt.Sprintf("/proc/self/fd/%d", w.f.Fd()))
}

func (w *writer) Written() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// stopHashing closes the queue (once) and waits for the hash to catch up.
// Callers hold w.mu; Write is never running then in a correct caller
// (writes come from one goroutine, which is the one committing).
func (w *writer) stopHashing() {
	if !w.stopped {
		w.stopped = true
		close(w.queue)
	}
	<-w.hashed
}

func (w *writer) Verify(size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.verifyLocked(size)
}

func (w *writer) verifyLocked(size int64) error {
	if w.verified || w.committed {
		return nil
	}
	if w.cancelled {
		return errors.New("verify after cancel")
	}
	w.stopHashing()
	if size >= 0 && w.n != size {
		w.cancelLocked()
		return fmt.Errorf("blob %s: wrote %d bytes, expected %d: %w", w.want, w.n, size, blobstore.ErrSizeMismatch)
	}
	got := digest.NewDigest(w.want.Algorithm(), w.h)
	if got != w.want {
		w.cancelLocked()
		return fmt.Errorf("blob %s: content hashes to %s: %w", w.want, got, blobstore.ErrDigestMismatch)
	}
	w.verified = true
	return nil
}

func (w *writer) Commit(_ context.Context, size int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed {
		return nil
	}
	if w.cancelled {
		return errors.New("commit after cancel")
	}
	if err := w.verifyLocked(size); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		w.cancelLocked()
		return fmt.Errorf("sync blob %s: %w", w.want, err)
	}
	if err := os.MkdirAll(filepath.Dir(w.final), 0o755); err != nil {
		w.cancelLocked()
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	if err := os.Rename(w.tmp, w.final); err != nil {
		w.cancelLocked()
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	syncDir(filepath.Dir(w.final))
	w.committed = true
	return nil
}

func (w *writer) Cancel() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.committed || w.cancelled {
		return nil
	}
	return w.cancelLocked()
}

func (w *writer) cancelLocked() error {
	w.cancelled = true
	w.stopHashing()
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove temporary file: %w", err)
	}
	return nil
}

func (w *writer) Close() error {
	cerr := w.Cancel()
	w.mu.Lock()
	w.stopHashing()
	w.mu.Unlock()
	if err := w.f.Close(); err != nil {
		return err
	}
	return cerr
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// Available is the number of bytes free for the store's files.
func (s *Store) Available() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(s.tmpDir(), &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", s.tmpDir(), err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Readable checks that committed content can be read: the blob directory
// opens and lists.
func (s *Store) Readable(context.Context) error {
	f, err := os.Open(s.blobDir())
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Writable checks that new content can be written: a file can be created
// in the temporary and the blob directories.
func (s *Store) Writable(context.Context) error {
	for _, dir := range []string{s.tmpDir(), s.blobDir()} {
		f, err := os.CreateTemp(dir, ".readyz-*")
		if err != nil {
			return err
		}
		f.Close()
		os.Remove(f.Name())
	}
	return nil
}

// Quarantined counts the files in QuarantineDir.
func (s *Store) Quarantined(context.Context) (int, string, error) {
	es, err := os.ReadDir(s.QuarantineDir())
	if errors.Is(err, fs.ErrNotExist) {
		return 0, s.QuarantineDir(), nil
	}
	return len(es), s.QuarantineDir(), err
}
