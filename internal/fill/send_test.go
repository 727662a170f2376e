package fill_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/upstream"
)

// TestSend is the verified send's table: each answer, from a growing fill
// whose verification the test holds back, to a writer that takes files
// (sendfile) and to one that does not. An answer that ends at the blob's
// end delivers all but its last byte and waits; it completes once the blob
// verifies and never completes when the fill fails then. A partial range
// short of the end completes before verification.
func TestSend(t *testing.T) {
	t.Parallel()
	const size = 1 << 20
	const corruptAt = size/2 + 10
	tests := []struct {
		name          string
		start, length int64 // length -1: to the end
		corrupt       bool
		early         bool // completes before the blob is verified
	}{
		{"whole blob", 0, size, false, false},
		{"range to the end, open", size / 2, -1, false, false},
		{"range through the last byte", size / 2, size - size/2, false, false},
		{"last byte alone", size - 1, 1, false, false},
		{"partial range during the fill", 100, 1000, false, true},
		{"all but the last byte", 0, size - 1, false, true},
		{"fill fails after the last byte was withheld", 0, size, true, false},
		{"range to the end of a fill that fails", size / 2, -1, true, false},
		{"partial range of a fill that fails", 100, 1000, true, true},
	}
	seed := uint64(0x5e0d)
	for _, tt := range tests {
		for _, files := range []bool{true, false} {
			seed++
			c := newContent(seed, size)
			name := tt.name + map[bool]string{true: ", sendfile", false: ", plain writer"}[files]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := testCtx(t)
				gate := make(chan struct{})
				e := newEnv(t, envConfig{store: func(s *disk.Store) blobstore.Store { return gatedStore{Store: s, gate: gate} }})
				release := sync.OnceFunc(func() { close(gate) })
				t.Cleanup(release) // before the env's cleanups: never leave Verify waiting
				f := fault{}
				if tt.corrupt {
					f = fault{corrupt: true, corruptAt: corruptAt}
				}
				e.up.add(c, func(int) fault { return f })
				r := e.open(c, c.size)
				sw := &sendWriter{}
				var w io.Writer = struct{ io.Writer }{sw}
				if files {
					w = fileTaker{sw}
				}
				want := tt.length
				if want < 0 {
					want = size - tt.start
				}
				done := make(chan error, 1)
				go func() { done <- r.Send(ctx, w, tt.start, tt.length) }()
				if !tt.early {
					// Everything but the last byte arrives; the last
					// waits for the verification the store holds back.
					waitFor(t, ctx, func() bool { return sw.len() == want-1 })
					select {
					case err := <-done:
						t.Fatalf("Send returned %v with %d of %d bytes before the blob was verified", err, sw.len(), want)
					case <-time.After(50 * time.Millisecond):
					}
					if sw.len() != want-1 {
						t.Fatalf("writer has %d bytes before verification, want %d", sw.len(), want-1)
					}
					release()
				}
				var err error
				select {
				case err = <-done:
				case <-ctx.Done():
					t.Fatalf("Send did not return: %d of %d bytes", sw.len(), want)
				}
				if tt.early {
					release()
				}
				switch {
				case tt.corrupt && !tt.early:
					if !errors.Is(err, blobstore.ErrDigestMismatch) || sw.len() != want-1 {
						t.Errorf("Send of a failing fill: %v with %d bytes; want a digest mismatch and %d bytes", err, sw.len(), want-1)
					}
				case err != nil || !bytes.Equal(sw.bytes(), c.bytesAt(tt.start, int(want))):
					t.Errorf("Send: %v, %d bytes (want %d), right bytes: %v", err, sw.len(), want, bytes.Equal(sw.bytes(), c.bytesAt(tt.start, int(want))))
				}
				if got := sw.files > 0; got != files {
					t.Errorf("sent by sendfile: %v, want %v", got, files)
				}
			})
		}
	}
}

// TestSendStored: a committed blob, opened through the fill manager (one
// store lookup), is sent by sendfile to a writer that takes files and by
// copy otherwise, for any range, as often as asked.
func TestSendStored(t *testing.T) {
	t.Parallel()
	c := newContent(0x5701, 256<<10)
	e := newEnv(t, envConfig{})
	ctx := testCtx(t)
	e.up.add(c, healthy)
	checkWhole(t, c, readWhole(ctx, e.open(c, c.size)))
	if !e.eventuallyCommitted(c) {
		t.Fatal("not committed")
	}
	e.waitIdle(ctx)
	r := e.open(c, -1)
	if r.Stored() == nil {
		t.Fatal("Open of a committed blob did not answer the stored blob")
	}
	for _, files := range []bool{true, false} {
		for _, rg := range [][2]int64{{0, c.size}, {0, -1}, {1000, 10}, {c.size - 5, 5}} {
			sw := &sendWriter{}
			var w io.Writer = struct{ io.Writer }{sw}
			if files {
				w = fileTaker{sw}
			}
			want := rg[1]
			if want < 0 {
				want = c.size - rg[0]
			}
			if err := r.Send(ctx, w, rg[0], rg[1]); err != nil || !bytes.Equal(sw.bytes(), c.bytesAt(rg[0], int(want))) {
				t.Errorf("Send(%d, %d): %v, %d bytes", rg[0], rg[1], err, sw.len())
			}
			if got := sw.files > 0; got != files {
				t.Errorf("Send(%d, %d) by sendfile: %v, want %v", rg[0], rg[1], got, files)
			}
		}
	}
	if gets, _ := e.up.gets(c.digest); gets != 1 {
		t.Errorf("upstream saw %d GETs, want 1", gets)
	}
}

// TestPassthroughSend: a body passed through without storing is hashed
// whole; the answer's last byte is held until it matched, so wrong bytes
// never complete an answer, whatever range was asked.
func TestPassthroughSend(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("regcache"), 8<<10)
	d := digest.FromBytes(body)
	bad := bytes.Clone(body)
	bad[len(bad)/2] ^= 0xff
	n := int64(len(body))
	for _, tt := range []struct {
		name          string
		bytes         []byte
		start, length int64
	}{
		{"whole", body, 0, -1},
		{"range", body, 100, 1000},
		{"whole, wrong bytes", bad, 0, -1},
		{"range before the wrong byte", bad, 100, 1000},
		{"range to the end, wrong bytes", bad, n / 2, n - n/2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got bytes.Buffer
			p := fill.NewPassthrough(d, &upstream.Blob{Body: io.NopCloser(bytes.NewReader(tt.bytes)), Size: n})
			defer p.Close()
			want := tt.length
			if want < 0 {
				want = n - tt.start
			}
			err := p.Send(t.Context(), &got, tt.start, tt.length)
			if bytes.Equal(tt.bytes, body) {
				if err != nil || !bytes.Equal(got.Bytes(), body[tt.start:tt.start+want]) {
					t.Errorf("Send: %v, %d bytes", err, got.Len())
				}
				return
			}
			if err == nil || int64(got.Len()) != want-1 {
				t.Errorf("Send of wrong bytes: %v, %d bytes; want an error and %d bytes", err, got.Len(), want-1)
			}
		})
	}
}

// gatedStore's writers hold Verify until gate is closed: the fill has
// written every byte, and is not verified yet.
type gatedStore struct {
	*disk.Store
	gate chan struct{}
}

func (s gatedStore) Create(ctx context.Context, d digest.Digest) (blobstore.Writer, error) {
	w, err := s.Store.Create(ctx, d)
	if err != nil {
		return nil, err
	}
	return &gatedWriter{Writer: w, gate: s.gate}, nil
}

type gatedWriter struct {
	blobstore.Writer
	gate chan struct{}
}

func (w *gatedWriter) Verify(size int64) error {
	<-w.gate
	return w.Writer.Verify(size)
}

// Reopen keeps the disk writer's file for sendfile.
func (w *gatedWriter) Reopen() (*os.File, error) {
	ro, ok := w.Writer.(interface{ Reopen() (*os.File, error) })
	if !ok {
		return nil, fmt.Errorf("%T cannot reopen", w.Writer)
	}
	return ro.Reopen()
}

// sendWriter collects what Send wrote; files counts the runs handed over
// as files (what a TCP connection sends by sendfile).
type sendWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	files int
}

func (w *sendWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *sendWriter) len() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int64(w.buf.Len())
}

func (w *sendWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// fileTaker is a writer with ReadFrom, as a net.TCPConn is.
type fileTaker struct{ *sendWriter }

func (w fileTaker) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if _, ok := lr.R.(*os.File); ok {
			w.mu.Lock()
			w.files++
			w.mu.Unlock()
		}
	}
	return io.Copy(struct{ io.Writer }{w.sendWriter}, r)
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		if !sleepCtx(ctx, time.Millisecond) {
			t.Fatal("condition not reached")
		}
	}
}
