package cacheindex_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cacheindex/indextest"
)

// TestConformance runs the suite the Redis index runs too.
func TestConformance(t *testing.T) {
	indextest.Run(t, func(t *testing.T, now func() time.Time) cacheindex.Backend {
		ix, err := cacheindex.Open(filepath.Join(t.TempDir(), "index.db"), time.Hour, cacheindex.WithClock(now))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		return ix
	})
}
