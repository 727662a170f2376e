package bench

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/regcache/regcache/internal/cacheindex"
)

func BenchmarkZZEvictPass(b *testing.B) {
	data := filepath.Join(b.TempDir(), "data")
	total := cachedIndex(b, data)
	db, _ := bolt.Open(filepath.Join(data, "index.db"), 0o600, &bolt.Options{ReadOnly: true})
	db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			s := bk.Stats()
			b.Logf("%s: keys %d leaf pages %d (%d MiB alloc, %d MiB inuse) branch %d", name, s.KeyN, s.LeafPageN, s.LeafAlloc>>20, s.LeafInuse>>20, s.BranchPageN)
			return nil
		})
	})
	st := db.Stats()
	b.Logf("free pages %d pending %d", st.FreePageN, st.PendingPageN)
	db.Close()
	ix, err := cacheindex.Open(filepath.Join(data, "index.db"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	for b.Loop() {
		t0 := time.Now()
		p, err := ix.EvictionPlan(cacheindex.EvictPolicy{MaxSize: total * 9 / 10, LowWater: total * 9 / 10}, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		ds := slices.Clone(p.Evict)
		slices.Sort(ds)
		if _, err := ix.DeleteBlobs(ds); err != nil {
			b.Fatal(err)
		}
		b.Logf("plan %s (%d files), delete %s", t1.Sub(t0), len(ds), time.Since(t1))
	}
}
