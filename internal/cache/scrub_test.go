package cache

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/blobstoretest"
	"github.com/regcache/regcache/internal/blobstore/disk"
)

// put commits b to s and returns its digest.
func put(t *testing.T, s blobstore.Store, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestScrubPace: a pass reads the store at the rate its size and the
// interval ask, never faster than the rate (in a synctest bubble, whose
// clock moves only while every goroutine waits, so the pass's length is
// its pacing alone).
func TestScrubPace(t *testing.T) {
	t.Parallel()
	st, err := disk.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var stored int64
	for i := range 4 {
		b := blobstoretest.RandBytes(uint64(i), 1<<20)
		put(t, st, b)
		stored += int64(len(b))
	}
	tests := []struct {
		name string
		pace Pace
		want time.Duration
	}{
		{"bounded by the rate", Pace{time.Second, 1 << 20}, time.Duration(float64(stored) / (1 << 20) * float64(time.Second))},
		{"paced by the interval", Pace{30 * time.Second, 1 << 30}, 30 * time.Second},
	}
	for _, tt := range tests {
		synctest.Test(t, func(t *testing.T) {
			s := NewScrub(st, tt.pace, func(context.Context, digest.Digest) { t.Error("forgot a good blob") })
			start := time.Now()
			n, err := s.Pass(t.Context())
			took := time.Since(start)
			if err != nil || n != 4 {
				t.Fatalf("%s: scrubbed %d blobs: %v", tt.name, n, err)
			}
			// The limiter's first chunk is free (its burst).
			if lo, hi := tt.want*8/10, tt.want*11/10; took < lo || took > hi {
				t.Errorf("%s: the pass of %d bytes took %s, want about %s", tt.name, stored, took, tt.want)
			}
			if got := s.Status(); got.Pass != 1 || got.Checked != 4 || got.Bytes != stored || got.LastPassEnd.IsZero() {
				t.Errorf("%s: status %+v", tt.name, got)
			}
		})
	}
}

// TestScrubDamage: a flipped byte and a truncated file are both found in
// one pass; the disk store quarantines them, each is forgotten once, and
// the good blob stays.
func TestScrubDamage(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st, err := disk.New(root)
	if err != nil {
		t.Fatal(err)
	}
	good := put(t, st, blobstoretest.RandBytes(1, 300<<10))
	flipped := put(t, st, blobstoretest.RandBytes(2, 300<<10))
	cut := put(t, st, blobstoretest.RandBytes(3, 300<<10))
	path := func(d digest.Digest) string {
		return filepath.Join(root, "blobs", "sha256", d.Encoded()[:2], d.Encoded())
	}
	b, _ := os.ReadFile(path(flipped))
	b[1000] ^= 1
	if err := os.WriteFile(path(flipped), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path(cut), 1000); err != nil {
		t.Fatal(err)
	}
	var forgot []digest.Digest
	s := NewScrub(st, Pace{time.Millisecond, 1 << 30}, func(_ context.Context, d digest.Digest) { forgot = append(forgot, d) }) // a pass at 1 GiB/s
	if _, err := s.Pass(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{flipped, cut}
	slices.Sort(want)
	slices.Sort(forgot)
	if !slices.Equal(forgot, want) {
		t.Errorf("forgot %v, want %v", forgot, want)
	}
	if got := s.Status(); got.DamagedTotal != 2 || len(got.Damaged) != 2 {
		t.Errorf("status %+v", got)
	}
	for _, d := range want {
		if _, err := os.Stat(filepath.Join(st.QuarantineDir(), "sha256-"+d.Encoded())); err != nil {
			t.Errorf("%s not quarantined: %v", d, err)
		}
		if _, err := st.Stat(t.Context(), d); err == nil {
			t.Errorf("%s is still in the store", d)
		}
	}
	if _, err := st.Stat(t.Context(), good); err != nil {
		t.Errorf("the good blob: %v", err)
	}
}

// TestScrubOffThenOn: with interval 0 Run waits without scrubbing;
// SetPace starts it at once, and a pass runs.
func TestScrubOffThenOn(t *testing.T) {
	t.Parallel()
	st, err := disk.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put(t, st, []byte("some content"))
	s := NewScrub(st, Pace{}, func(context.Context, digest.Digest) {})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	time.Sleep(100 * time.Millisecond)
	if got := s.Status(); got.Enabled || got.Pass != 0 {
		t.Fatalf("off, yet %+v", got)
	}
	s.SetPace(Pace{Interval: time.Hour, Rate: 1 << 30})
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().LastPassEnd.IsZero() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := s.Status(); !got.Enabled || got.Pass != 1 || got.Checked != 1 {
		t.Errorf("after SetPace: %+v", got)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
