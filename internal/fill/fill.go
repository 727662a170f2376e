// Package fill fetches each missing blob from upstream exactly once and lets
// any number of clients stream it while it arrives.
//
// A Fill owns one upstream fetch: it writes the body into a blobstore.Writer
// (a temporary file) while hashing it, resumes a dropped connection with
// Range, and commits only verified bytes. A large blob may come over
// several connections at once, as ranges written at their offsets and
// hashed in order (segments.go). Readers read the growing file from
// any offset at their own pace; the fill never waits for them and goes on
// when they all leave. If the bytes turn out wrong, every reader gets an
// error before the end of its declared length, so no client ever receives
// wrong bytes as a complete response.
package fill

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/defaults"
	"github.com/regcache/regcache/internal/upstream"
)

// Source opens the upstream body of a blob from offset. It may answer from
// an earlier offset (an upstream that ignores Range); Blob.Offset says where
// the body starts.
type Source func(ctx context.Context, offset int64) (*upstream.Blob, error)

// ErrDiskFull marks a fill that failed because the store ran out of space.
var ErrDiskFull = errors.New("cache disk is full")

// Manager runs fills, at most one per digest at a time.
type Manager struct {
	store    blobstore.Store
	log      *slog.Logger
	timeout  time.Duration
	attempts int
	backoff  time.Duration
	hooks    atomic.Pointer[Hooks]
	maxSize  int64
	free     func() (int64, error)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	fills map[fillKey]*Fill
	// commits counts the fills that committed, so an Open that found the
	// store without the blob knows whether to look again.
	commits uint64

	counts counters
}

// fillKey is one upstream's fetch of one digest: a reader joins only a
// fill from the upstream it asked, so a slow (or hostile) upstream trickling
// a digest holds no reader of another upstream. The first verified commit
// wins; the other fills of the digest stop once no reader waits on them.
type fillKey struct {
	origin string
	d      digest.Digest
}

// errSuperseded ends a fill whose digest another fill committed first.
var errSuperseded = errors.New("another upstream's fill of the same digest committed first")

// Option configures a Manager.
type Option func(*Manager)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(m *Manager) { m.log = l } }

// WithTimeout bounds a fill once no client reads it any more, and a fill
// that receives no byte for that long (default defaults.FillTimeout). A fill that
// moves while clients wait is never cut, however long the blob.
func WithTimeout(d time.Duration) Option { return func(m *Manager) { m.timeout = d } }

// WithResume sets how many consecutive upstream failures without progress a
// fill survives, and the first backoff between them (default 5, 100ms).
func WithResume(attempts int, backoff time.Duration) Option {
	return func(m *Manager) { m.attempts, m.backoff = max(attempts, 1), backoff }
}

// Hooks are told what a fill established; the content service records it
// in the index (mirror.New sets them). Each gets the fill's ctx without its
// end: what was verified or committed is recorded even while the manager
// closes (a shared index still bounds each write). Either may be nil.
type Hooks struct {
	// Verified: the fill's bytes hashed to their digest, d; the upstream
	// named origin served them. Called before the commit, and so before
	// the store shows them.
	Verified func(ctx context.Context, d digest.Digest, origin string)
	// Committed: d is in the store, size bytes. A commit counted in
	// Totals was told here first.
	Committed func(ctx context.Context, d digest.Digest, size int64)
}

// SetHooks sets what the fills that verify or commit from now on tell.
func (m *Manager) SetHooks(h Hooks) { m.hooks.Store(&h) }

// WithMaxSize bounds a blob whose size nobody said (no manifest, no
// Content-Length): a longer body fails the fill (default defaults.MaxBlobSize).
func WithMaxSize(n int64) Option { return func(m *Manager) { m.maxSize = n } }

// WithFreeSpace sets how the Manager learns the free space of the store's
// disk. A fill whose size is known and larger than what is free fails at
// once with ErrDiskFull, before any client has received headers, instead of
// failing mid-stream.
func WithFreeSpace(fn func() (int64, error)) Option { return func(m *Manager) { m.free = fn } }

// New returns a Manager writing into store.
func New(store blobstore.Store, opts ...Option) *Manager {
	m := &Manager{store: store, log: slog.New(slog.DiscardHandler), timeout: defaults.FillTimeout,
		attempts: 5, backoff: 100 * time.Millisecond, fills: map[fillKey]*Fill{}, maxSize: defaults.MaxBlobSize}
	for _, o := range opts {
		o(m)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m
}

// Close stops every running fill (their readers get an error) and waits for
// them to end.
func (m *Manager) Close() {
	m.mu.Lock() // an acquire either sees the cancel or has done wg.Add
	m.cancel()
	m.mu.Unlock()
	m.wg.Wait()
}

// Active is the number of fills running.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.fills)
}

// Open returns a reader of the blob from byte 0: the committed blob when
// the store has it (Reader.Stored), else a reader of the running fill for
// d, joined or started. size is the expected length if known (from a
// manifest), else -1. The store is asked once.
func (m *Manager) Open(d digest.Digest, size int64, src Source) (*Reader, error) {
	return m.OpenFrom("", d, size, src)
}

// OpenFrom is Open for the upstream named origin: it joins only that
// upstream's fill of d.
func (m *Manager) OpenFrom(origin string, d digest.Digest, size int64, src Source, opts ...StartOption) (*Reader, error) {
	f, stored, joined, err := m.acquire(fillKey{origin, d}, size, src, true, opts)
	if err != nil {
		return nil, err
	}
	if stored != nil {
		return &Reader{stored: stored}, nil
	}
	return &Reader{f: f, joined: joined}, nil
}

// Start begins a fill for d if none runs and the store lacks it, without a
// reader (prefetch). It returns a channel closed when that fill ends, or nil
// when there is nothing to do.
func (m *Manager) Start(d digest.Digest, size int64, src Source) <-chan struct{} {
	return m.StartFrom("", d, size, src)
}

// StartFrom is Start for the upstream named origin.
func (m *Manager) StartFrom(origin string, d digest.Digest, size int64, src Source, opts ...StartOption) <-chan struct{} {
	f, _, _, err := m.acquire(fillKey{origin, d}, size, src, false, opts)
	if err != nil || f == nil {
		return nil
	}
	defer f.release()
	return f.finished
}

// acquire joins k's running fill (joined) or starts one. When the store
// holds the digest it starts nothing: with open it returns the committed
// blob (stored), else nothing at all. The store is asked outside the
// manager's lock (a hit waits for no other fill's bookkeeping), and asked
// again only if a fill committed meanwhile.
func (m *Manager) acquire(k fillKey, size int64, src Source, open bool, opts []StartOption) (f *Fill, stored blobstore.Blob, joined bool, err error) {
	d := k.d
	m.mu.Lock()
	if f := m.joinLocked(k); f != nil {
		m.mu.Unlock()
		return f, nil, true, nil
	}
	commits := m.commits
	m.mu.Unlock()
	if stored, ok, err := m.lookup(d, open); ok || err != nil {
		return nil, stored, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.joinLocked(k); f != nil {
		return f, nil, true, nil
	}
	if m.commits != commits { // a fill committed since the lookup: perhaps this one
		if stored, ok, err := m.lookup(d, open); ok || err != nil {
			return nil, stored, false, err
		}
	}
	if m.ctx.Err() != nil {
		return nil, nil, false, errors.New("shutting down")
	}
	w, err := m.store.Create(m.ctx, d)
	if err != nil {
		return nil, nil, false, classify(fmt.Errorf("start fill of %s: %w", d, err))
	}
	f = &Fill{m: m, key: k, d: d, w: w, size: size, expected: size, refs: 2, // the run goroutine and the caller
		notify: make(chan struct{}), finished: make(chan struct{}), started: time.Now()}
	for _, o := range opts {
		o(f)
	}
	m.fills[k] = f
	m.wg.Add(1)
	go f.run(src)
	return f, nil, false, nil
}

// joinLocked takes a reference on k's running fill, or returns nil when
// none runs or it was superseded (another upstream's fill committed the
// digest: the store has it). m.mu is held.
func (m *Manager) joinLocked(k fillKey) *Fill {
	f, ok := m.fills[k]
	if !ok {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.superseded {
		return nil
	}
	f.refs++
	return f
}

// lookup asks the store for d: with open, the committed blob to read.
// unreachable is the store's blobstore.ErrUnavailable (an object store
// that is down): whether it holds d is not known, so no fill starts.
func (m *Manager) lookup(d digest.Digest, open bool) (b blobstore.Blob, ok bool, unreachable error) {
	var err error
	if open {
		b, err = m.store.Open(m.ctx, d)
	} else {
		_, err = m.store.Stat(m.ctx, d)
	}
	if errors.Is(err, blobstore.ErrUnavailable) {
		return nil, false, err
	}
	return b, err == nil, nil
}

// Fill is one upstream fetch of one blob.
type Fill struct {
	m        *Manager
	key      fillKey
	d        digest.Digest
	w        blobstore.Writer
	expected int64
	finished chan struct{}
	started  time.Time

	mu       sync.Mutex
	notify   chan struct{} // closed and replaced on every change
	size     int64         // -1 until known
	known    bool          // size is settled (from the manifest or the first response)
	written  int64
	verified bool // the bytes hash to the digest (the commit may follow)
	done     bool
	err      error
	refs     int
	origin   string // the upstream the bytes came from
	// superseded: another fill of the digest committed; this one stops as
	// soon as no reader waits on it.
	superseded bool
	// sides and sideBytes are the upstream range fetches for far ranges of
	// this blob: how many run now, and how many bytes they asked in all.
	sides     int
	sideBytes int64

	// received counts every body byte from upstream (the watch's sign of
	// progress).
	received int64
	// A fill over several connections (segments.go): pieces is nil for
	// one stream; written is then the contiguous prefix, hashed in order.
	segFetch SegmentSource
	conns    int
	pieces   []*piece
	advMu    sync.Mutex // one Advance of the writer at a time
}

func (f *Fill) changed() {
	close(f.notify)
	f.notify = make(chan struct{})
}

func (f *Fill) release() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last {
		if err := f.w.Close(); err != nil {
			f.m.log.Warn("close fill", slog.String("digest", f.d.String()), slog.Any("error", err))
		}
	}
}

func (f *Fill) run(src Source) {
	defer f.m.wg.Done()
	defer f.release()
	defer close(f.finished)
	ctx, cancel := context.WithCancelCause(f.m.ctx)
	defer cancel(nil)
	stopWatch := f.watch(cancel)
	start := time.Now()
	err := f.fetchAll(ctx, src)
	if err == nil {
		err = f.w.Verify(f.size)
	}
	stopWatch()
	if err != nil && ctx.Err() != nil {
		err = context.Cause(ctx)
	}
	if err == nil {
		// The bytes are right: readers may have the last byte now, while
		// the file is made durable and moved into place.
		f.mu.Lock()
		f.verified = true
		f.changed()
		origin := f.origin
		f.mu.Unlock()
		if h := f.m.hooks.Load(); h != nil && h.Verified != nil {
			h.Verified(context.WithoutCancel(ctx), f.d, origin)
		}
		if cerr := f.w.Commit(ctx, f.size); cerr != nil {
			// Readers got verified bytes; the blob just is not cached.
			f.m.log.Error("verified blob could not be committed; not cached", slog.String("digest", f.d.String()), slog.Any("error", classify(cerr)))
			f.finish(nil, false)
			return
		}
	}
	if err != nil {
		// Discard before telling readers: when they see the error, no
		// temporary file is left (their open handle still reads).
		_ = f.w.Cancel()
	}
	written := f.finish(err, err == nil)
	if errors.Is(err, errSuperseded) {
		f.m.log.Info("fill stopped: the digest was committed from another upstream", slog.String("digest", f.d.String()), slog.String("upstream", f.key.origin))
		return
	}
	if err != nil {
		f.m.counts.failed.Add(1)
		f.m.log.Warn("fill failed; nothing cached", slog.String("digest", f.d.String()), slog.Int64("bytes", written), slog.Any("error", classify(err)))
		return
	}
	f.m.log.Info("fill committed", slog.String("digest", f.d.String()), slog.Int64("bytes", written), slog.Duration("duration", time.Since(start)))
	if h := f.m.hooks.Load(); h != nil && h.Committed != nil {
		h.Committed(context.WithoutCancel(ctx), f.d, written)
	}
	f.m.counts.committed.Add(1) // after Committed: a count seen means the index has it
}

// finish removes the fill from the manager and marks it done with err;
// committed (the blob is in the store) stops the other fills of the digest.
func (f *Fill) finish(err error, committed bool) (written int64) {
	f.m.mu.Lock()
	if f.m.fills[f.key] == f { // a superseded fill may have been replaced
		delete(f.m.fills, f.key)
	}
	if committed { // the first verified commit wins
		f.m.commits++
		for k, o := range f.m.fills {
			if k.d == f.d {
				o.mu.Lock()
				o.superseded = true
				o.mu.Unlock()
			}
		}
	}
	f.m.mu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done, f.err = true, classify(err)
	f.changed()
	return f.written
}

// watch bounds the fill with the manager's timeout in the two ways that
// matter: once no client reads it any more (a detached fill must end some
// time), and when no byte has arrived for that long (a stalled upstream).
// A slow but moving fill that clients wait for is never cut. It returns a
// function that stops the watch and waits for it.
func (f *Fill) watch(cancel context.CancelCauseFunc) (stop func()) {
	tick := min(max(f.m.timeout/4, time.Millisecond), time.Second)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(tick)
		defer t.Stop()
		now := time.Now()
		var lastWritten int64
		lastProgress, alone := now, time.Time{}
		for {
			select {
			case <-quit:
				return
			case now = <-t.C:
			}
			f.mu.Lock()
			readers, written, superseded := f.refs-1, f.received, f.superseded
			f.mu.Unlock()
			if superseded && readers == 0 {
				cancel(errSuperseded)
				return
			}
			if written != lastWritten {
				lastWritten, lastProgress = written, now
			}
			switch {
			case readers > 0:
				alone = time.Time{}
			case alone.IsZero():
				alone = now
			case now.Sub(alone) > f.m.timeout:
				cancel(fmt.Errorf("fill timeout: no client has read it for %s: %w", f.m.timeout, context.DeadlineExceeded))
				return
			}
			if now.Sub(lastProgress) > f.m.timeout {
				cancel(fmt.Errorf("fill timeout: no byte from upstream for %s: %w", f.m.timeout, context.DeadlineExceeded))
				return
			}
		}
	}()
	return func() { close(quit); <-done }
}

// fetch copies the upstream body into the writer, resuming with Range after
// a dropped connection, until the expected size is reached or the body ends.
func (f *Fill) fetch(ctx context.Context, src Source) error {
	r := f.m.resume()
	buf := make([]byte, 128<<10)
	for {
		written := f.w.Written()
		f.mu.Lock()
		complete := f.known && f.size >= 0 && written == f.size
		f.mu.Unlock()
		if complete { // the connection dropped after the last byte
			return nil
		}
		b, err := src(ctx, written)
		if ok, err := f.take(ctx, r, b, err); !ok {
			if err != nil {
				return err
			}
			continue
		}
		progressed, err := f.copyBody(ctx, b, written, buf)
		b.Body.Close()
		if stop, err := f.resumeAfter(ctx, r, progressed, err, "upstream body interrupted; resuming", f.w.Written()); stop {
			return err
		}
	}
}

// take is one upstream answer of a fetch loop: a body, its origin
// recorded and its size checked (true); or a failed request, to be asked
// again after the budget's wait (false, nil) or given up (false, err): a
// permanent upstream error, a range the upstream ignored, ctx ended, or
// the attempts spent.
func (f *Fill) take(ctx context.Context, r *retries, b *upstream.Blob, err error) (bool, error) {
	if err != nil {
		var ue *upstream.Error
		if errors.Is(err, upstream.ErrRangeIgnored) || ctx.Err() != nil || (errors.As(err, &ue) && !ue.Temporary()) {
			return false, err
		}
		if ok, cerr := r.again(ctx, false, nil); !ok {
			return false, cmp.Or(cerr, err)
		}
		return false, nil
	}
	f.mu.Lock()
	f.origin = b.Upstream
	f.mu.Unlock()
	if err := f.learnSize(b); err != nil {
		b.Body.Close()
		return false, err
	}
	return true, nil
}

// resumeAfter decides after a body was copied with err whether the loop
// stops (true: the body ended cleanly, err nil; or it broke for good, or
// the budget is spent: the error) or resumes (false: logged as msg at
// offset, after the budget's wait).
func (f *Fill) resumeAfter(ctx context.Context, r *retries, progressed bool, err error, msg string, offset int64) (bool, error) {
	if err == nil {
		return true, nil
	}
	if errors.Is(err, errFatal) || ctx.Err() != nil {
		return true, err
	}
	if ok, cerr := r.again(ctx, progressed, func() {
		f.m.log.Info(msg, slog.String("digest", f.d.String()), slog.Int64("offset", offset), slog.Any("error", err))
	}); !ok {
		return true, cmp.Or(cerr, err)
	}
	return false, nil
}

// retries are one fetch's budget for resuming after dropped connections:
// the manager's attempts in a row without progress, each after a wait that
// doubles from its backoff; progress starts the count again.
type retries struct {
	m        *Manager
	failures int
	wait     time.Duration
}

func (m *Manager) resume() *retries { return &retries{m: m, wait: m.backoff} }

// again counts a failure (after progress, the first of a new run) and,
// while attempts are left, calls before (when not nil) and waits. false
// when the attempts are spent (err nil: the caller returns its own) or ctx
// ended while waiting (its error).
func (r *retries) again(ctx context.Context, progressed bool, before func()) (bool, error) {
	if progressed {
		r.failures, r.wait = 0, r.m.backoff
	}
	if r.failures++; r.failures >= r.m.attempts {
		return false, nil
	}
	if before != nil {
		before()
	}
	if !sleep(ctx, r.wait) {
		return false, ctx.Err()
	}
	r.wait *= 2
	return true, nil
}

var errFatal = errors.New("giving up")

// learnSize settles the blob's size from the first response and checks
// later ones against it.
func (f *Fill) learnSize(b *upstream.Blob) error {
	total := b.Size // the whole blob's length: from Content-Range on a 206, Content-Length on a 200
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case total < 0:
	case f.size < 0:
		f.size = total
	case f.size != total:
		return fmt.Errorf("%w: upstream says the blob is %d bytes, expected %d: %w", errFatal, total, f.size, blobstore.ErrSizeMismatch)
	}
	if !f.known && f.size >= 0 && f.m.free != nil {
		if free, err := f.m.free(); err == nil && free < f.size-f.written+diskMargin {
			return fmt.Errorf("%w: %w: blob needs %d bytes, %d free", errFatal, ErrDiskFull, f.size-f.written, free)
		}
	}
	if !f.known {
		f.known = true
		f.changed()
	}
	return nil
}

// diskMargin is kept free beyond a blob's size (the index and manifests
// live on the same disk).
const diskMargin = 1 << 20

// copyBody appends the body to the writer, first skipping bytes already
// written when the upstream answered from an earlier offset. It returns nil
// only when the body is complete.
func (f *Fill) copyBody(ctx context.Context, b *upstream.Blob, written int64, buf []byte) (bool, error) {
	if skip := written - b.Offset; skip > 0 {
		if _, err := io.CopyN(io.Discard, b.Body, skip); err != nil {
			return false, fmt.Errorf("skip %d bytes already written: %w", skip, err)
		}
	}
	progressed := false
	for {
		if err := ctx.Err(); err != nil {
			return progressed, err
		}
		n, rerr := b.Body.Read(buf)
		if n > 0 {
			f.mu.Lock()
			size := f.size
			f.mu.Unlock()
			if size >= 0 && f.w.Written()+int64(n) > size {
				return progressed, fmt.Errorf("%w: upstream sent more than %d bytes: %w", errFatal, size, blobstore.ErrSizeMismatch)
			}
			if size < 0 && f.m.maxSize > 0 && f.w.Written()+int64(n) > f.m.maxSize {
				return progressed, fmt.Errorf("%w: upstream sent more than %d bytes for a blob of unknown size: %w", errFatal, f.m.maxSize, blobstore.ErrSizeMismatch)
			}
			if _, err := f.w.Write(buf[:n]); err != nil {
				return progressed, fmt.Errorf("%w: write cache file: %w", errFatal, err)
			}
			progressed = true
			f.m.counts.fetched.add(b.Upstream, int64(n))
			f.mu.Lock()
			f.written = f.w.Written()
			f.received += int64(n)
			f.changed()
			f.mu.Unlock()
		}
		if rerr == io.EOF {
			f.mu.Lock()
			size, got := f.size, f.written
			f.mu.Unlock()
			if size >= 0 && got < size {
				return progressed, fmt.Errorf("upstream body ended at %d of %d bytes: %w", got, size, io.ErrUnexpectedEOF)
			}
			return progressed, nil
		}
		if rerr != nil {
			return progressed, rerr
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// classify marks out-of-space errors so callers can say the disk is full.
func classify(err error) error {
	if err != nil && errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}
