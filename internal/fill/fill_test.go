package fill_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/upstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readResult is what one reader saw.
type readResult struct {
	n      int64
	digest digest.Digest
	err    error
}

// readWhole drains r from byte 0, hashing as it streams.
func readWhole(ctx context.Context, r *fill.Reader) readResult {
	dg := digest.SHA256.Digester()
	n, err := drain(ctx, r, dg.Hash())
	return readResult{n: n, digest: dg.Digest(), err: err}
}

func checkWhole(t *testing.T, c *content, got readResult) {
	t.Helper()
	if got.err != nil || got.n != c.size || got.digest != c.digest {
		t.Errorf("reader got %d bytes hashing to %s, err %v; want %d bytes of %s", got.n, got.digest, got.err, c.size, c.digest)
	}
}

// checkClean asserts nothing is left of a failed fill: no fill running, no
// temporary file, nothing committed.
func checkClean(t *testing.T, ctx context.Context, e *env, c *content) {
	t.Helper()
	e.waitIdle(ctx)
	if left := e.tmpFiles(); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
	if e.committed(c) {
		t.Errorf("blob committed after a failed fill")
	}
}

// TestManyReadersColdBlob: 32 readers of a cold 128 MiB blob share one
// upstream GET, all get the right bytes, and they get bytes while the fill
// is still running.
func TestManyReadersColdBlob(t *testing.T) {
	t.Parallel()
	const readers = 32
	c := big()
	e := newEnv(t, envConfig{})
	ctx := testCtx(t)
	// The upstream pauses a quarter of the way in until every reader has
	// had bytes: the fill cannot have completed by then.
	gate := make(chan struct{})
	e.up.add(c, func(int) fault { return fault{gateAt: c.size / 4, gate: gate} })

	var first sync.WaitGroup
	first.Add(readers)
	results := make(chan readResult, readers)
	var rs []*fill.Reader
	for i := range readers {
		size := c.size
		if i%2 == 1 {
			size = -1 // a client that does not know the size
		}
		r := e.open(c, size)
		rs = append(rs, r)
		go func() {
			if n, err := r.Size(ctx); err != nil || n != c.size {
				results <- readResult{err: errors.Join(err, errors.New("wrong size"))}
				first.Done()
				return
			}
			dg := digest.SHA256.Digester()
			w := &firstByteWriter{w: dg.Hash(), first: first.Done}
			n, err := drain(ctx, r, w)
			if !w.seen {
				first.Done()
			}
			results <- readResult{n: n, digest: dg.Digest(), err: err}
		}()
	}
	waitGroup(t, ctx, &first)
	if got := e.m.Active(); got != 1 {
		t.Errorf("Active() = %d while readers stream, want 1", got)
	}
	if e.committed(c) {
		t.Fatal("blob committed before the upstream sent it all")
	}
	close(gate)
	for range readers {
		checkWhole(t, c, <-results)
	}
	if err := rs[0].Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	for _, r := range rs {
		r.Close()
	}
	if gets, _ := e.up.gets(c.digest); gets != 1 {
		t.Errorf("upstream saw %d GETs, want 1", gets)
	}
	if !e.eventuallyCommitted(c) {
		t.Error("blob not committed")
	}
	if left := e.tmpFiles(); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

type firstByteWriter struct {
	w     io.Writer
	first func()
	seen  bool
}

func (w *firstByteWriter) Write(p []byte) (int, error) {
	if !w.seen && len(p) > 0 {
		w.seen = true
		w.first()
	}
	return w.w.Write(p)
}

func waitGroup(t *testing.T, ctx context.Context, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("waiting: %v", ctx.Err())
	}
}

// TestReadersLeave: readers that close part-way (or before reading) do not
// stop the fill, and the blob ends up committed.
func TestReadersLeave(t *testing.T) {
	t.Parallel()
	c := newContent(2, 4<<20)
	commits := make(chan digest.Digest, 1)
	e := newEnv(t, envConfig{})
	e.m.SetHooks(fill.Hooks{Committed: func(_ context.Context, d digest.Digest, size int64) {
		if size != c.size {
			t.Errorf("Committed size %d, want %d", size, c.size)
		}
		commits <- d
	}})
	ctx := testCtx(t)
	gate := make(chan struct{})
	e.up.add(c, firstOnly(fault{gateAt: 2 << 20, gate: gate}))

	var wg sync.WaitGroup
	for _, n := range []int64{0, 1, 64 << 10, 1 << 20, 2 << 20} {
		r := e.open(c, c.size)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			if n == 0 {
				return
			}
			cw := newCompareWriter(c, 0)
			got, err := io.CopyN(cw, r.WithContext(ctx), n)
			if err != nil || got != n || cw.bad >= 0 {
				t.Errorf("reader of %d bytes: got %d, err %v, first bad byte %d", n, got, err, cw.bad)
			}
		}()
	}
	waitGroup(t, ctx, &wg) // every reader is gone
	if e.m.Active() != 1 {
		t.Fatalf("Active() = %d after readers left, want the fill still running", e.m.Active())
	}
	close(gate)
	select {
	case d := <-commits:
		if d != c.digest {
			t.Errorf("committed %s, want %s", d, c.digest)
		}
	case <-ctx.Done():
		t.Fatal("fill did not commit after its readers left")
	}
	e.waitIdle(ctx)
	if !e.eventuallyCommitted(c) {
		t.Error("blob not committed")
	}
	if gets, _ := e.up.gets(c.digest); gets != 1 {
		t.Errorf("upstream saw %d GETs, want 1", gets)
	}
	if left := e.tmpFiles(); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestSlowReader: a reader that reads slowly delays neither the fill nor
// the other readers, and still gets the right bytes at its own pace.
func TestSlowReader(t *testing.T) {
	t.Parallel()
	c := newContent(3, 16<<20)
	commits := make(chan struct{})
	e := newEnv(t, envConfig{})
	e.m.SetHooks(fill.Hooks{Committed: func(context.Context, digest.Digest, int64) { close(commits) }})
	ctx := testCtx(t)
	e.up.add(c, func(int) fault { return fault{rate: 64 << 20} }) // a 250ms fill

	var progress atomic.Int64
	slowDone := make(chan readResult, 1)
	stop := make(chan struct{})
	slow := e.open(c, c.size)
	go func() {
		dg := digest.SHA256.Digester()
		buf := make([]byte, 4<<10)
		for {
			select {
			case <-stop: // let it catch up at full speed
				n, err := drain(ctx, slow, dg.Hash())
				slowDone <- readResult{n: progress.Load() + n, digest: dg.Digest(), err: err}
				return
			case <-time.After(10 * time.Millisecond): // about 400 kB/s
			}
			n, err := slow.ReadContext(ctx, buf)
			dg.Hash().Write(buf[:n])
			progress.Add(int64(n))
			if err != nil {
				slowDone <- readResult{n: progress.Load(), err: err}
				return
			}
		}
	}()
	fast := make(chan readResult, 3)
	for range 3 {
		r := e.open(c, c.size)
		go func() { fast <- readWhole(ctx, r) }()
	}
	for range 3 {
		checkWhole(t, c, <-fast)
	}
	select {
	case <-commits:
	case <-ctx.Done():
		t.Fatal("no commit")
	}
	if p := progress.Load(); p > c.size/4 {
		t.Errorf("slow reader at %d of %d bytes when the fill and fast readers finished; want it far behind (test too slow?)", p, c.size)
	}
	close(stop)
	checkWhole(t, c, <-slowDone)
}

// TestResume: a body cut mid-blob is resumed with Range from what was
// written; an upstream ignoring Range is read again from byte 0 and the
// written part skipped. Readers see the right bytes, with no error.
func TestResume(t *testing.T) {
	t.Parallel()
	const cut = 300_000
	tests := []struct {
		name       string
		script     script
		wantRanges []string
	}{
		{"truncated", firstOnly(fault{truncateAfter: cut}), []string{"", "bytes=300000-"}},
		{"connection reset", firstOnly(fault{resetAfter: cut}), []string{"", "bytes=300000-"}},
		{"cut twice", func(attempt int) fault {
			switch attempt {
			case 1:
				return fault{truncateAfter: 100_000}
			case 2:
				return fault{resetAfter: 200_000}
			}
			return fault{}
		}, []string{"", "bytes=100000-", "bytes=300000-"}},
		{"range ignored", func(attempt int) fault {
			if attempt == 1 {
				return fault{truncateAfter: cut}
			}
			return fault{ignoreRange: true}
		}, []string{"", "bytes=300000-"}},
		{"range ignored and cut before the written part", func(attempt int) fault {
			switch attempt {
			case 1:
				return fault{truncateAfter: cut}
			case 2:
				return fault{ignoreRange: true, truncateAfter: cut / 2}
			}
			return fault{ignoreRange: true}
		}, []string{"", "bytes=300000-", "bytes=300000-"}},
		{"server error on resume", func(attempt int) fault {
			switch attempt {
			case 1:
				return fault{resetAfter: cut}
			case 2:
				return fault{status: http.StatusServiceUnavailable}
			}
			return fault{}
		}, []string{"", "bytes=300000-", "bytes=300000-"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newContent(100+uint64(i), 1<<20)
			e := newEnv(t, envConfig{})
			ctx := testCtx(t)
			e.up.add(c, tt.script)
			results := make(chan readResult, 3)
			for range 3 {
				r := e.open(c, c.size)
				go func() { results <- readWhole(ctx, r) }()
			}
			for range 3 {
				checkWhole(t, c, <-results)
			}
			e.waitIdle(ctx)
			gets, ranges := e.up.gets(c.digest)
			if gets != len(tt.wantRanges) || !slices.Equal(ranges, tt.wantRanges) {
				t.Errorf("upstream saw %d GETs with Range %q, want %q", gets, ranges, tt.wantRanges)
			}
			if !e.eventuallyCommitted(c) {
				t.Error("blob not committed")
			}
			if left := e.tmpFiles(); len(left) > 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

// TestCorrupt: bytes that do not hash to the digest reach no reader as a
// complete blob: every reader gets an error before its declared length,
// nothing is cached, and a later Open against a healthy upstream succeeds.
func TestCorrupt(t *testing.T) {
	t.Parallel()
	const size, rate = 1 << 20, 16 << 20
	tests := []struct {
		name   string
		size   int64 // passed to Open
		script script
	}{
		// The upstream is throttled so readers keep up with the fill and
		// are waiting for the last bytes when they land.
		{"first byte", size, firstOnly(fault{corrupt: true, corruptAt: 0, rate: rate})},
		{"middle", size, firstOnly(fault{corrupt: true, corruptAt: size / 2, rate: rate})},
		{"last byte", size, firstOnly(fault{corrupt: true, corruptAt: size - 1, rate: rate})},
		{"last byte, size unknown", -1, firstOnly(fault{corrupt: true, corruptAt: size - 1, rate: rate})},
		{"last byte, unthrottled", size, firstOnly(fault{corrupt: true, corruptAt: size - 1})},
		{"in a resumed body", size, func(attempt int) fault {
			switch attempt {
			case 1:
				return fault{truncateAfter: size / 3}
			case 2:
				return fault{corrupt: true, corruptAt: size - 1, rate: rate}
			}
			return fault{}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newContent(200+uint64(i), size)
			e := newEnv(t, envConfig{})
			ctx := testCtx(t)
			e.up.add(c, tt.script)
			var rs []*fill.Reader
			results := make(chan readResult, 4)
			for range 4 {
				r := e.open(c, tt.size)
				rs = append(rs, r)
				go func() {
					declared, err := r.Size(ctx)
					if err != nil {
						results <- readResult{err: err}
						return
					}
					res := readWhole(ctx, r)
					if res.err == nil {
						t.Errorf("reader got %d bytes and EOF from a corrupt fill", res.n)
					} else if res.n >= declared {
						t.Errorf("reader got all %d declared bytes before the error %v", res.n, res.err)
					}
					results <- res
				}()
			}
			for range 4 {
				if res := <-results; !errors.Is(res.err, blobstore.ErrDigestMismatch) {
					t.Errorf("reader error = %v, want ErrDigestMismatch", res.err)
				}
			}
			if err := rs[0].Wait(ctx); !errors.Is(err, blobstore.ErrDigestMismatch) {
				t.Errorf("Wait = %v, want ErrDigestMismatch", err)
			}
			for _, r := range rs {
				r.Close()
			}
			checkClean(t, ctx, e, c)

			// The upstream is healthy again: a fresh fill succeeds.
			e.up.setScript(c.digest, healthy)
			r := e.open(c, c.size)
			checkWhole(t, c, readWhole(ctx, r))
			if err := r.Wait(ctx); err != nil {
				t.Errorf("Wait after healthy refetch: %v", err)
			}
			if !e.eventuallyCommitted(c) {
				t.Error("healthy refetch not committed")
			}
		})
	}
}

// TestSizeMismatch: when the upstream's length disagrees with the expected
// one (or with itself), readers get an error and nothing is cached.
func TestSizeMismatch(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	tests := []struct {
		name    string
		size    int64 // passed to Open
		script  script
		wantErr error
	}{
		{"upstream shorter than expected", size + 1, healthy, blobstore.ErrSizeMismatch},
		{"upstream longer than expected", size - 1, healthy, blobstore.ErrSizeMismatch},
		{"resumed body announces another total", size, func(attempt int) fault {
			if attempt == 1 {
				return fault{truncateAfter: size / 2}
			}
			return fault{sizeDelta: 5}
		}, blobstore.ErrSizeMismatch},
		{"upstream announces more than it has", -1, func(int) fault { return fault{sizeDelta: 10} }, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newContent(300+uint64(i), size)
			e := newEnv(t, envConfig{})
			ctx := testCtx(t)
			e.up.add(c, tt.script)
			r := e.open(c, tt.size)
			declared, err := r.Size(ctx)
			if err == nil {
				res := readWhole(ctx, r)
				err = res.err
				if err == nil || res.n >= declared {
					t.Errorf("reader got %d of %d declared bytes, error %v; want an error before the end", res.n, declared, err)
				}
			}
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			r.Close()
			checkClean(t, ctx, e, c)
		})
	}
}

// TestUpstreamErrors: a 404 is passed on at once as not-found; a 5xx is
// retried and, if it persists, fails the fill.
func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		script   script
		check    func(error) bool
		wantGets func(int) bool
	}{
		{"not found", func(int) fault { return fault{status: http.StatusNotFound} }, upstream.IsNotFound,
			func(n int) bool { return n == 1 }},
		{"server error", func(int) fault { return fault{status: http.StatusInternalServerError} }, func(err error) bool {
			// Retried until the upstream client's circuit breaker marks
			// the upstream down; either error is a clear upstream failure.
			var ue *upstream.Error
			return errors.As(err, &ue) && (ue.StatusCode == http.StatusInternalServerError || errors.Is(err, upstream.ErrUpstreamDown))
		}, func(n int) bool { return n > 1 }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newContent(400+uint64(i), 64<<10)
			e := newEnv(t, envConfig{})
			ctx := testCtx(t)
			e.up.add(c, tt.script)
			r := e.open(c, c.size)
			r2 := e.open(c, -1)
			if _, err := r.Size(ctx); !tt.check(err) {
				t.Errorf("Size error = %v", err)
			}
			if _, err := r2.ReadContext(ctx, make([]byte, 10)); !tt.check(err) || errors.Is(err, io.EOF) {
				t.Errorf("ReadContext error = %v", err)
			}
			if err := r.Wait(ctx); !tt.check(err) {
				t.Errorf("Wait error = %v", err)
			}
			if gets, _ := e.up.gets(c.digest); !tt.wantGets(gets) {
				t.Errorf("upstream saw %d GETs", gets)
			}
			r.Close()
			r2.Close()
			checkClean(t, ctx, e, c)
		})
	}
	t.Run("server error then healthy", func(t *testing.T) {
		t.Parallel()
		c := newContent(410, 64<<10)
		e := newEnv(t, envConfig{})
		ctx := testCtx(t)
		e.up.add(c, firstOnly(fault{status: http.StatusBadGateway}))
		checkWhole(t, c, readWhole(ctx, e.open(c, c.size)))
		if gets, _ := e.up.gets(c.digest); gets != 2 {
			t.Errorf("upstream saw %d GETs, want 2", gets)
		}
	})
}

// TestSeek: readers starting inside the written part of a growing file get
// bytes at once; readers starting beyond it wait for them; all get the
// right bytes.
func TestSeek(t *testing.T) {
	t.Parallel()
	c := newContent(5, 4<<20)
	const written = 1<<20 + 100
	e := newEnv(t, envConfig{})
	ctx := testCtx(t)
	gate := make(chan struct{})
	e.up.add(c, firstOnly(fault{gateAt: written, gate: gate}))

	// Once this reader has the first `written` bytes, the file holds
	// exactly that much: the upstream is paused there.
	r0 := e.open(c, c.size)
	if n, err := io.CopyN(io.Discard, r0.WithContext(ctx), written); err != nil || n != written {
		t.Fatalf("first reader: %d bytes, %v", n, err)
	}
	tests := []struct {
		name  string
		off   int64
		ready bool // bytes are there before the upstream goes on
	}{
		{"start", 0, true},
		{"inside the written part", 1000, true},
		{"last written byte", written - 1, true},
		{"at the written end", written, false},
		{"beyond the written part", written + 1<<20, false},
		{"last byte", c.size - 1, false},
		{"end", c.size, false},
		{"past the end", c.size + 10, false},
	}
	readers := make([]*fill.Reader, len(tests))
	for i, tt := range tests {
		r := e.open(c, c.size)
		if got, err := r.Seek(tt.off, io.SeekStart); err != nil || got != tt.off {
			t.Fatalf("%s: Seek = %d, %v", tt.name, got, err)
		}
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		buf := make([]byte, 100)
		n, err := r.ReadContext(short, buf)
		cancel()
		switch {
		case tt.ready && (err != nil || n == 0):
			t.Errorf("%s: read at %d of the growing file = %d, %v; want bytes at once", tt.name, tt.off, n, err)
		case tt.ready && string(buf[:n]) != string(c.bytesAt(tt.off, n)):
			t.Errorf("%s: wrong bytes at %d", tt.name, tt.off)
		case !tt.ready && !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("%s: read at %d beyond the written part = %d, %v; want it to wait", tt.name, tt.off, n, err)
		}
		if _, err := r.Seek(tt.off, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		readers[i] = r
	}
	if _, err := r0.Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek(-1) succeeded")
	}
	if _, err := r0.Seek(0, io.SeekCurrent); err == nil {
		t.Error("Seek(0, SeekCurrent) succeeded, though unsupported")
	}
	close(gate)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cw := newCompareWriter(c, min(tt.off, c.size))
			n, err := drain(ctx, readers[i], cw)
			if want := max(c.size-tt.off, 0); err != nil || n != want || cw.bad >= 0 {
				t.Errorf("read from %d: %d bytes (want %d), err %v, first wrong byte at %d", tt.off, n, want, err, cw.bad)
			}
		})
	}
}

// TestInStore: once committed, Open answers the stored blob (no fill) and
// Start has nothing to do.
func TestInStore(t *testing.T) {
	t.Parallel()
	c := newContent(6, 256<<10)
	e := newEnv(t, envConfig{})
	ctx := testCtx(t)
	e.up.add(c, healthy)
	done := e.m.Start(c.digest, c.size, e.src(c.digest))
	if done == nil {
		t.Fatal("Start of a cold blob returned nil")
	}
	// A reader joining the prefetch shares its GET.
	r := e.open(c, c.size)
	checkWhole(t, c, readWhole(ctx, r))
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("prefetch did not finish")
	}
	if r2, err := e.m.Open(c.digest, c.size, e.src(c.digest)); err != nil || r2.Stored() == nil {
		t.Errorf("Open after commit = %v, want the stored blob", err)
	} else {
		r2.Close()
	}
	if ch := e.m.Start(c.digest, c.size, e.src(c.digest)); ch != nil {
		t.Error("Start after commit returned a channel")
	}
	// The reader that joined the fill still reads the committed bytes.
	r.Seek(c.size-10, io.SeekStart)
	if b, err := io.ReadAll(r.WithContext(ctx)); err != nil || string(b) != string(c.bytesAt(c.size-10, 10)) {
		t.Errorf("re-read after commit: %q, %v", b, err)
	}
	if gets, _ := e.up.gets(c.digest); gets != 1 {
		t.Errorf("upstream saw %d GETs, want 1", gets)
	}
}

// TestDiskFull: running out of space fails the fill with ErrDiskFull,
// without retrying upstream and without leaving anything behind.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	c := newContent(7, 1<<20)
	e := newEnv(t, envConfig{store: func(s *disk.Store) blobstore.Store { return fullStore{Store: s, limit: 300_000} }})
	ctx := testCtx(t)
	e.up.add(c, healthy)
	r := e.open(c, c.size)
	res := readWhole(ctx, r)
	if !errors.Is(res.err, fill.ErrDiskFull) || !errors.Is(res.err, syscall.ENOSPC) || res.n > 300_000 {
		t.Errorf("reader: %d bytes, error %v; want ErrDiskFull", res.n, res.err)
	}
	if gets, _ := e.up.gets(c.digest); gets != 1 {
		t.Errorf("upstream saw %d GETs, want 1", gets)
	}
	r.Close()
	checkClean(t, ctx, e, c)
}

// TestManagerClose: Close during a fill ends it; readers get an error, no
// file is left, later Opens are refused, and nothing leaks. Not parallel,
// so goleak can check this test alone.
func TestManagerClose(t *testing.T) {
	opts := goleak.IgnoreCurrent()
	c := newContent(8, 4<<20)
	t.Run("close", func(t *testing.T) {
		e := newEnv(t, envConfig{})
		ctx := testCtx(t)
		gate := make(chan struct{}) // never opened: the upstream stalls mid-blob
		e.up.add(c, func(int) fault { return fault{gateAt: 1 << 20, gate: gate} })
		results := make(chan readResult, 3)
		var rs []*fill.Reader
		for range 3 {
			r := e.open(c, c.size)
			rs = append(rs, r)
			go func() { results <- readWhole(ctx, r) }()
		}
		// Wait for the fill to be under way.
		if _, err := io.CopyN(io.Discard, e.open(c, c.size).WithContext(ctx), 1<<20); err != nil {
			t.Fatal(err)
		}
		e.m.Close()
		for range 3 {
			res := <-results
			if res.err == nil || errors.Is(res.err, io.EOF) || res.n >= c.size {
				t.Errorf("reader after Close: %d bytes, error %v; want an error", res.n, res.err)
			}
		}
		if err := rs[0].Wait(ctx); err == nil {
			t.Error("Wait after Close returned nil")
		}
		if e.m.Active() != 0 {
			t.Errorf("Active() = %d after Close", e.m.Active())
		}
		if _, err := e.m.Open(c.digest, c.size, e.src(c.digest)); err == nil {
			t.Errorf("Open after Close = %v, want a refusal", err)
		}
		if e.m.Start(c.digest, c.size, e.src(c.digest)) != nil {
			t.Error("Start after Close returned a channel")
		}
		for _, r := range rs {
			r.Close()
		}
		checkClean(t, ctx, e, c)
	})
	// The subtest's cleanups closed the server and the client's idle
	// connections.
	goleak.VerifyNone(t, opts)
}

// BenchmarkFill fills a cold 64 MiB blob from a local upstream while four
// readers stream it.
func BenchmarkFill(b *testing.B) {
	c := newContent(9, 64<<20)
	c.data, _ = io.ReadAll(c.open(0))
	e := newEnv(b, envConfig{})
	e.up.add(c, healthy)
	ctx := b.Context()
	b.SetBytes(c.size)
	b.ReportAllocs()
	for b.Loop() {
		var wg sync.WaitGroup
		var rs []*fill.Reader
		for range 4 {
			r, err := e.m.Open(c.digest, c.size, e.src(c.digest))
			if err != nil {
				b.Fatal(err)
			}
			rs = append(rs, r)
			wg.Go(func() {
				if n, err := drain(ctx, r, io.Discard); err != nil || n != c.size {
					b.Errorf("read %d bytes: %v", n, err)
				}
			})
		}
		wg.Wait()
		if err := rs[0].Wait(ctx); err != nil {
			b.Fatal(err)
		}
		for _, r := range rs {
			r.Close()
		}
		if err := e.store.Delete(ctx, c.digest); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCloseRacesOpen: Close racing Opens never returns while a fill it did
// not stop is still running.
func TestCloseRacesOpen(t *testing.T) {
	t.Parallel()
	cs := make([]*content, 8)
	e := newEnv(t, envConfig{})
	for i := range cs {
		cs[i] = newContent(uint64(900+i), 1024)
		e.up.add(cs[i], healthy)
	}
	for iter := range 200 {
		s, err := disk.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		m := fill.New(s)
		var start, wg sync.WaitGroup
		start.Add(1)
		for _, c := range cs {
			wg.Go(func() {
				start.Wait()
				if r, err := m.Open(c.digest, c.size, e.src(c.digest)); err == nil {
					r.Close()
				}
			})
		}
		start.Done()
		m.Close()
		if n := m.Active(); n != 0 {
			t.Fatalf("iteration %d: %d fills running after Close returned", iter, n)
		}
		wg.Wait()
	}
}

// TestFillTimeout: a stalled upstream is bounded by the fill timeout even
// with nobody reading.
func TestFillTimeout(t *testing.T) {
	t.Parallel()
	c := newContent(10, 1<<20)
	e := newEnv(t, envConfig{opts: []fill.Option{fill.WithTimeout(200 * time.Millisecond)}})
	ctx := testCtx(t)
	gate := make(chan struct{}) // never opened
	e.up.add(c, func(int) fault { return fault{gateAt: 1000, gate: gate} })
	r := e.open(c, c.size)
	if res := readWhole(ctx, r); !errors.Is(res.err, context.DeadlineExceeded) || res.n > 1000 {
		t.Errorf("reader of a stalled fill: %d bytes, error %v; want DeadlineExceeded", res.n, res.err)
	}
	r.Close()
	checkClean(t, ctx, e, c)
}

// TestSizes: blobs of edge sizes (empty, one byte, around the fill's copy
// buffer) fill and read correctly, with the size known or not.
func TestSizes(t *testing.T) {
	t.Parallel()
	for i, size := range []int64{0, 1, 128<<10 - 1, 128 << 10, 128<<10 + 1} {
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("%d bytes, known %v", size, known), func(t *testing.T) {
				t.Parallel()
				c := newContent(uint64(1000+i), size)
				e := newEnv(t, envConfig{})
				ctx := testCtx(t)
				e.up.add(c, func(int) fault { return fault{rate: 4 << 20} })
				want := int64(-1)
				if known {
					want = size
				}
				results := make(chan readResult, 2)
				for range 2 {
					r := e.open(c, want)
					go func() {
						if n, err := r.Size(ctx); err != nil || n != size {
							results <- readResult{err: fmt.Errorf("Size = %d, %v", n, err)}
							return
						}
						results <- readWhole(ctx, r)
					}()
				}
				for range 2 {
					checkWhole(t, c, <-results)
				}
				e.waitIdle(ctx)
				if !e.eventuallyCommitted(c) {
					t.Error("not committed")
				}
			})
		}
	}
}
