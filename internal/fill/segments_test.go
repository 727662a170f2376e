package fill_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/upstream"
)

// segments is the fill's range source over the env's upstream.
func (e *env) segments(d digest.Digest) fill.SegmentSource {
	return func(ctx context.Context, start, length int64) (*upstream.Blob, error) {
		return e.client.BlobSegment(ctx, "library/test", d, start, length)
	}
}

// openSegmented opens c's fill over conns connections (export_test.go makes
// the pieces 1 MiB).
func (e *env) openSegmented(c *content, conns int) *fill.Reader {
	e.t.Helper()
	r, err := e.m.OpenFrom("", c.digest, c.size, e.src(c.digest), fill.Segmented(e.segments(c.digest), conns))
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

// TestSegmentedFill: a blob of known size comes over several connections
// at once, as closed ranges, each byte once; the reader from byte 0 gets
// the blob and it is committed.
func TestSegmentedFill(t *testing.T) {
	t.Parallel()
	c := newContent(0x5e6, 8<<20+12345)
	e := newEnv(t, envConfig{})
	ctx := testCtx(t)
	e.up.add(c, func(int) fault { return fault{rate: 8 << 20} }) // each connection at 8 MiB/s
	r := e.openSegmented(c, 4)
	checkWhole(t, c, readWhole(ctx, r))
	if !e.eventuallyCommitted(c) {
		t.Fatal("not committed")
	}
	gets, ranges := e.up.gets(c.digest)
	sent, most := e.up.traffic(c.digest)
	if gets != 8 || most < 2 || sent != c.size {
		t.Errorf("upstream: %d GETs (%d at once) sent %d bytes; want 8 pieces over several connections, %d bytes: %v", gets, most, sent, c.size, ranges)
	}
	for _, rg := range ranges {
		if !strings.HasPrefix(rg, "bytes=") || strings.HasSuffix(rg, "-") {
			t.Errorf("range %q: want a closed range", rg)
		}
	}
	if got := e.m.Totals().Fetched["test.local"]; got != c.size {
		t.Errorf("fetched %d bytes, want %d", got, c.size)
	}
}

// TestSegmentedFaults: the faults a fill over one stream survives, over
// several connections. Nothing wrong is committed or sent as complete.
func TestSegmentedFaults(t *testing.T) {
	t.Parallel()
	const size = 6<<20 + 777
	tests := []struct {
		name   string
		script func(c *content) script
		ok     bool
		check  func(t *testing.T, e *env, c *content)
	}{
		{"wrong bytes in one segment", func(c *content) script {
			return func(int) fault { return fault{corrupt: true, corruptAt: 4<<20 + 99} }
		}, false, nil},
		{"a segment cut mid-way is resumed", func(c *content) script {
			return func(n int) fault {
				if n == 3 {
					return fault{truncateAfter: 300 << 10}
				}
				return fault{}
			}
		}, true, func(t *testing.T, e *env, c *content) {
			_, ranges := e.up.gets(c.digest)
			if sent, _ := e.up.traffic(c.digest); sent != c.size {
				t.Errorf("upstream sent %d bytes, want %d (the cut piece resumed where it stopped): %v", sent, c.size, ranges)
			}
		}},
		{"a segment reset mid-way is resumed", func(c *content) script {
			return func(n int) fault {
				if n == 2 {
					return fault{resetAfter: 200 << 10}
				}
				return fault{}
			}
		}, true, nil},
		{"200 to a range: one stream", func(c *content) script {
			return func(int) fault { return fault{ignoreRange: true} }
		}, true, func(t *testing.T, e *env, c *content) {
			_, ranges := e.up.gets(c.digest)
			stream := false
			for _, rg := range ranges {
				stream = stream || rg == "" || strings.HasSuffix(rg, "-")
			}
			if !stream {
				t.Errorf("no GET of the whole blob, or of the rest of it, over one stream: %v", ranges)
			}
		}},
		{"an upstream error on one segment", func(c *content) script {
			return func(n int) fault {
				if n == 2 {
					return fault{status: http.StatusNotFound}
				}
				return fault{}
			}
		}, false, nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newContent(uint64(0x5e60+i), size)
			e := newEnv(t, envConfig{})
			ctx := testCtx(t)
			e.up.add(c, tt.script(c))
			r := e.openSegmented(c, 3)
			res := readWhole(ctx, r)
			if tt.ok {
				checkWhole(t, c, res)
				if !e.eventuallyCommitted(c) {
					t.Error("not committed")
				}
				if tt.check != nil {
					tt.check(t, e, c)
				}
				return
			}
			if res.err == nil || res.n >= c.size {
				t.Errorf("reader got %d bytes, error %v; want the answer cut", res.n, res.err)
			}
			r.Close()
			checkClean(t, ctx, e, c)
		})
	}
}

// TestSegmentedDiskFull: running out of space while segments land fails
// the fill with ErrDiskFull and leaves nothing behind.
func TestSegmentedDiskFull(t *testing.T) {
	t.Parallel()
	c := newContent(0x5e7, 4<<20)
	e := newEnv(t, envConfig{store: func(s *disk.Store) blobstore.Store { return fullAtStore{Store: s, limit: 3 << 20} }})
	ctx := testCtx(t)
	e.up.add(c, healthy)
	r := e.openSegmented(c, 4)
	res := readWhole(ctx, r)
	if !errors.Is(res.err, fill.ErrDiskFull) || res.n >= c.size {
		t.Errorf("reader: %d bytes, error %v; want ErrDiskFull", res.n, res.err)
	}
	r.Close()
	checkClean(t, ctx, e, c)
}

// fullAtStore is a disk store whose writers fail with ENOSPC for any byte
// past limit, written in order or at an offset.
type fullAtStore struct {
	*disk.Store
	limit int64
}

func (s fullAtStore) Create(ctx context.Context, d digest.Digest) (blobstore.Writer, error) {
	w, err := s.Store.Create(ctx, d)
	if err != nil {
		return nil, err
	}
	return &fullAtWriter{WriterAt: w.(blobstore.WriterAt), limit: s.limit}, nil
}

type fullAtWriter struct {
	blobstore.WriterAt
	limit int64
}

func (w *fullAtWriter) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) <= w.limit {
		return w.WriterAt.WriteAt(p, off)
	}
	n, _ := w.WriterAt.WriteAt(p[:max(w.limit-off, 0)], off)
	return n, &os.PathError{Op: "write", Path: "tmp", Err: syscall.ENOSPC}
}

// TestSegmentSteered: a client's range far in a blob filled over several
// connections is fetched next, once, and answered from the fill's file as
// its bytes land, long before the fill reaches it in order; the blob's
// other bytes come once too.
func TestSegmentSteered(t *testing.T) {
	t.Parallel()
	c := newContent(0x5e8, 16<<20)
	e := newEnv(t, envConfig{})
	ctx := testCtx(t)
	e.up.add(c, func(int) fault { return fault{rate: 2 << 20} }) // 2 MiB/s per connection: 4 s for the blob over 2
	r := e.openSegmented(c, 2)
	if _, err := r.Size(ctx); err != nil {
		t.Fatal(err)
	}
	const at, length = 13<<20 + 4096, 256 << 10
	w := newCompareWriter(c, at)
	began := time.Now()
	if err := r.Send(ctx, w, at, length); err != nil || w.pos != at+length || w.bad >= 0 {
		t.Fatalf("range: to %d, first wrong byte at %d, err %v", w.pos, w.bad, err)
	}
	// Two connections each on its first 1 MiB piece (0.5 s), then the
	// range's piece: well under the 4 s the fill takes in all.
	if took := time.Since(began); took > 2500*time.Millisecond {
		t.Errorf("the range took %s: not fetched before the rest", took)
	}
	_, ranges := e.up.gets(c.digest)
	found := false
	for _, rg := range ranges {
		found = found || strings.HasPrefix(rg, "bytes=13631488-")
	}
	if !found {
		t.Errorf("no segment starts at the client's range: %v", ranges)
	}
	checkWhole(t, c, readWhole(ctx, r))
	if sent, _ := e.up.traffic(c.digest); sent != c.size {
		t.Errorf("upstream sent %d bytes, want %d", sent, c.size)
	}
}
