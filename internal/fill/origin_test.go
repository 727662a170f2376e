package fill_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/upstream"
)

// trickle yields one byte per tick until ctx ends.
type trickle struct {
	ctx  context.Context
	data []byte
	tick time.Duration
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	select {
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	case <-time.After(t.tick):
	}
	p[0], t.data = t.data[0], t.data[1:]
	return 1, nil
}

// TestFillsPerUpstream: a reader from a fast upstream does not wait on a
// slow upstream's fill of the same digest; the fast fill's commit stops the
// slow one once no reader waits on it.
func TestFillsPerUpstream(t *testing.T) {
	blob := make([]byte, 256<<10)
	rand.Read(blob)
	d := digest.FromBytes(blob)
	store, err := disk.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	commits := make(chan string, 4)
	m := fill.New(store)
	m.SetHooks(fill.Hooks{Verified: func(_ context.Context, _ digest.Digest, origin string) { commits <- origin }})
	defer m.Close()
	slowStopped := make(chan struct{})
	slow := func(ctx context.Context, off int64) (*upstream.Blob, error) {
		body := &trickle{ctx: ctx, data: blob[off:], tick: 10 * time.Millisecond}
		go func() { <-ctx.Done(); close(slowStopped) }()
		return &upstream.Blob{Body: io.NopCloser(body), Offset: off, Size: int64(len(blob)), Upstream: "slow.example"}, nil
	}
	fast := func(ctx context.Context, off int64) (*upstream.Blob, error) {
		return &upstream.Blob{Body: io.NopCloser(bytes.NewReader(blob[off:])), Offset: off, Size: int64(len(blob)), Upstream: "docker.io"}, nil
	}
	if ch := m.StartFrom("slow.example", d, -1, slow); ch == nil {
		t.Fatal("slow fill not started")
	}
	start := time.Now()
	r, err := m.OpenFrom("docker.io", d, -1, fast)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r.WithContext(t.Context()))
	r.Close()
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("fast reader: %d bytes, %v", len(got), err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the fast upstream's reader took %v, held by the slow fill", took)
	}
	select {
	case <-slowStopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow fill went on after the digest was committed")
	}
	select {
	case origin := <-commits:
		if origin != "docker.io" {
			t.Errorf("committed from %q, want docker.io", origin)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no commit")
	}
	if r, err := m.OpenFrom("slow.example", d, -1, slow); err != nil || r.Stored() == nil {
		t.Errorf("after the commit: %v, want the stored blob", err)
	} else {
		r.Close()
	}
}
