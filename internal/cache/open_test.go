package cache

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
)

// TestOpenLocked: while a Cache holds a data directory's index, a second
// opener (another command, or a server starting) fails at once.
func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	ix, err := cacheindex.Open(filepath.Join(dir, "index.db"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open: %v, want ErrLocked", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("noticing the lock took %s", el)
	}
}

// TestPruneFinishesOnceBegun: a prune's deletions go in sorted batches,
// each holding part of every planned image, so a cancellation once they
// have begun does not stop them between batches (which would leave many
// images half deleted): a cancelled prune of three batches' worth of blobs
// leaves none.
func TestPruneFinishesOnceBegun(t *testing.T) {
	dir := t.TempDir()
	ix, err := cacheindex.Open(filepath.Join(dir, "index.db"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3 * 8192
	blobs := make([]cacheindex.BatchBlob, n)
	now := time.Now()
	for i := range blobs {
		at := now.Add(-time.Duration(i) * time.Second)
		blobs[i] = cacheindex.BatchBlob{Digest: digest.FromString(strconv.Itoa(i)), Entry: cacheindex.BlobEntry{Size: 100, Created: at, LastAccess: at}}
	}
	slices.SortFunc(blobs, func(a, b cacheindex.BatchBlob) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	if err := ix.PutBatch(t.Context(), cacheindex.Batch{Blobs: blobs}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := c.Prune(ctx, PruneRequest{ToSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != n || c.Index().Totals().Blobs != 0 {
		t.Errorf("pruned %d files, %d blob entries left; want %d and 0", res.Files, c.Index().Totals().Blobs, n)
	}
}
