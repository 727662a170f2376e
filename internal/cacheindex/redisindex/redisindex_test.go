package redisindex

import (
	"fmt"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cacheindex/indextest"
	"github.com/regcache/regcache/internal/testenv"
)

// TestConformance runs the bbolt index's suite against a real
// redis-server on loopback; each subtest has a key prefix of its own.
func TestConformance(t *testing.T) {
	srv := testenv.NewRedis(t)
	opts, err := ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	n := 0
	indextest.Run(t, func(t *testing.T, now func() time.Time) cacheindex.Backend {
		n++
		ix, err := New(t.Context(), c, time.Hour, WithClock(now), WithPrefix(fmt.Sprintf("t%d:", n)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		return ix
	})
}

// TestWrongPassword: a bad URL or password is an error naming the option.
func TestWrongPassword(t *testing.T) {
	srv := testenv.NewRedis(t)
	opts, _ := ParseURL("redis://:wrong@" + srv.Addr + "/0")
	c := redis.NewClient(opts)
	defer c.Close()
	if _, err := New(t.Context(), c, time.Hour); err == nil {
		t.Fatal("New with a wrong password succeeded")
	}
	if _, err := ParseURL("http://" + srv.Addr); err == nil {
		t.Fatal("ParseURL of an http URL succeeded")
	}
}

// TestTolerance: with Redis stopped, a tolerant index reads nothing and
// drops writes instead of failing; a strict one fails.
func TestTolerance(t *testing.T) {
	srv := testenv.NewRedis(t)
	opts, _ := ParseURL(srv.URL)
	c := redis.NewClient(opts)
	defer c.Close()
	tolerant, err := New(t.Context(), c, time.Hour, WithTolerance())
	if err != nil {
		t.Fatal(err)
	}
	strict, _ := New(t.Context(), c, time.Hour)
	d := digest.FromString("x")
	if err := tolerant.PutBlob(d, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, ok, err := tolerant.Blob(d); ok || err != nil {
		t.Fatalf("tolerant Blob with Redis down = %v, %v; want absent, no error", ok, err)
	}
	if err := tolerant.PutTag("u", "r", "t", cacheindex.TagEntry{}); err != nil {
		t.Fatalf("tolerant PutTag with Redis down: %v", err)
	}
	if _, _, err := strict.Blob(d); err == nil {
		t.Fatal("strict Blob with Redis down: no error")
	}
	// A scan or a delete is not a request to keep serving: a tolerant
	// index still fails them, so no plan or count is built on nothing and
	// no caller takes an entry for gone.
	if err := tolerant.Blobs(func(digest.Digest, cacheindex.BlobEntry) error { return nil }); err == nil {
		t.Error("tolerant Blobs with Redis down: no error")
	}
	if err := tolerant.DeleteBlob(d); err == nil {
		t.Error("tolerant DeleteBlob with Redis down: no error")
	}
	if _, err := cacheindex.PlanEviction(tolerant, cacheindex.EvictPolicy{MaxSize: 1}, time.Now()); err == nil {
		t.Error("eviction plan with Redis down: no error")
	}
}
