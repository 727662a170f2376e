package cacheindex

import (
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestTouchesKeep: a batch a flush could not write goes back, and an access
// recorded since it was taken wins over it.
func TestTouchesKeep(t *testing.T) {
	var tc Touches
	a, b := digest.FromString("a"), digest.FromString("b")
	t0 := time.Unix(1000, 0)
	tc.Add(t0, a, b)
	batch := tc.Take()
	if len(batch) != 2 || len(tc.Take()) != 0 {
		t.Fatalf("took %v, then more", batch)
	}
	tc.Add(t0.Add(time.Minute), a) // while the flush failed
	tc.Keep(batch)
	got := tc.Take()
	if !got[a].Equal(t0.Add(time.Minute)) || !got[b].Equal(t0) {
		t.Errorf("after Keep: %v", got)
	}
}
