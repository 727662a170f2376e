package redisindex

import (
	"context"
	"errors"
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
	if err := tolerant.PutBlob(t.Context(), d, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, ok, err := tolerant.Blob(t.Context(), d); ok || err != nil {
		t.Fatalf("tolerant Blob with Redis down = %v, %v; want absent, no error", ok, err)
	}
	if err := tolerant.PutTag(t.Context(), "u", "r", "t", cacheindex.TagEntry{}); err != nil {
		t.Fatalf("tolerant PutTag with Redis down: %v", err)
	}
	if _, _, err := strict.Blob(t.Context(), d); err == nil {
		t.Fatal("strict Blob with Redis down: no error")
	}
	// A scan or a delete is not a request to keep serving: a tolerant
	// index still fails them, so no plan or count is built on nothing and
	// no caller takes an entry for gone.
	if err := tolerant.Blobs(t.Context(), func(digest.Digest, cacheindex.BlobEntry) error { return nil }); err == nil {
		t.Error("tolerant Blobs with Redis down: no error")
	}
	if err := tolerant.DeleteBlob(t.Context(), d); err == nil {
		t.Error("tolerant DeleteBlob with Redis down: no error")
	}
	if _, err := cacheindex.PlanEviction(t.Context(), tolerant, cacheindex.EvictPolicy{MaxSize: 1}, time.Now()); err == nil {
		t.Error("eviction plan with Redis down: no error")
	}
}

// TestCallEndsWithCtx: while Redis does not answer (CLIENT PAUSE), an
// index call returns as soon as its caller's ctx ends (cancelled, or its
// deadline), or its own per-call timeout passes, not when the reply's read
// times out; a ctx ended before the call never waits. A tolerant index
// reports a caller's ended ctx as an error (a client gone is not Redis
// away). After the pause the index answers again.
func TestCallEndsWithCtx(t *testing.T) {
	srv := testenv.NewRedis(t)
	opts, err := ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts.ReadTimeout = time.Minute // only the ctx or the index's own bound may end a wait
	c := redis.NewClient(opts)
	defer c.Close()
	ix, err := New(t.Context(), c, time.Hour, WithTolerance())
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	d := digest.FromString("x")
	if err := ix.PutBlob(t.Context(), d, 1); err != nil {
		t.Fatal(err)
	}
	pauser := redis.NewClient(opts)
	defer pauser.Close()
	const pause = 4 * time.Second
	if err := pauser.Do(t.Context(), "CLIENT", "PAUSE", pause.Milliseconds(), "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()

	const prompt = time.Second // well under the pause
	ended, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		timeout time.Duration // the index's per-call bound; 0: the default
		want    error         // nil: a tolerated failure (absent, no error)
	}{
		{"cancelled during the call", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, 0, context.Canceled},
		{"deadline during the call", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(t.Context(), 100*time.Millisecond)
		}, 0, context.DeadlineExceeded},
		{"ended before the call", func() (context.Context, context.CancelFunc) { return ended, func() {} }, 0, context.Canceled},
		{"the index's own bound", func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, 100 * time.Millisecond, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ix.timeout = 10 * time.Second
			if tt.timeout > 0 {
				ix.timeout = tt.timeout
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, ok, err := ix.Blob(ctx, d)
			took := time.Since(start)
			if ok || !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("Blob = %v, %v; want absent and %v", ok, err, tt.want)
			}
			if took > prompt {
				t.Errorf("Blob returned after %s; Redis is paused for %s", took.Round(time.Millisecond), pause)
			}
			if err := ix.PutTag(ctx, "u", "r", "t", cacheindex.TagEntry{}); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Errorf("PutTag = %v, want %v", err, tt.want)
			}
			if err := ix.Blobs(ctx, func(digest.Digest, cacheindex.BlobEntry) error { return nil }); err == nil {
				t.Error("Blobs: no error") // a scan is never tolerated
			}
		})
	}
	ix.timeout = 10 * time.Second
	if took := time.Since(paused); took > pause-time.Second {
		t.Fatalf("the cases took %s of the %s pause: they did not all run while Redis was paused", took, pause)
	}
	time.Sleep(time.Until(paused.Add(pause)))
	if _, ok, err := ix.Blob(t.Context(), d); !ok || err != nil {
		t.Fatalf("Blob after the pause = %v, %v", ok, err)
	}
}
