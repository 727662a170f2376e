package admin

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/ui"
)

func TestDashboardTotals(t *testing.T) {
	ix, err := cacheindex.Open(filepath.Join(t.TempDir(), "index.db"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for i, size := range []int64{10, 20, 30} {
		if err := ix.PutBlob(t.Context(), digest.FromString(string(rune('a'+i))), size); err != nil {
			t.Fatal(err)
		}
	}
	for _, tag := range []string{"1", "2"} {
		if err := ix.PutTag(t.Context(), "docker.io", "library/alpine", tag, cacheindex.TagEntry{Digest: digest.FromString(tag)}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := countIndex(t.Context(), ix)
	if err != nil {
		t.Fatal(err)
	}
	if c.Blobs != 3 || c.Bytes != 60 || c.Tags != 2 {
		t.Errorf("totals %+v, want 3 blobs, 60 bytes, 2 tags", c)
	}
}

// TestDashboardTotalsThrottled: the index is counted at most every few
// seconds however often the page is asked for, and a failed count keeps
// the last good numbers.
func TestDashboardTotalsThrottled(t *testing.T) {
	now := time.Unix(1000, 0)
	counts, fail := 0, false
	tc := &totalsCounter{every: 5 * time.Second, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler),
		count: func(context.Context) (ui.Cache, error) {
			counts++
			if fail {
				return ui.Cache{}, errors.New("boom")
			}
			return ui.Cache{Blobs: counts}, nil
		}}
	for range 100 {
		tc.get(t.Context())
	}
	if counts != 1 {
		t.Fatalf("100 page loads counted the index %d times, want 1", counts)
	}
	now = now.Add(5 * time.Second)
	if c := tc.get(t.Context()); counts != 2 || c.Blobs != 2 || !c.Counted.Equal(now) {
		t.Fatalf("after 5s: %d counts, %+v", counts, c)
	}
	now, fail = now.Add(5*time.Second), true
	if c := tc.get(t.Context()); c.Blobs != 2 || c.Err == nil {
		t.Fatalf("failed count: %+v, want the last counts and the error", c)
	}
}
