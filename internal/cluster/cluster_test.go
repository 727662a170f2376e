package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/testenv"
)

func newRedis(t *testing.T) redis.UniversalClient {
	srv := testenv.NewRedis(t)
	o, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestOwnerAgreesAndMovesLittle: replicas with the same live set pick the
// same owner; one leaving moves only the keys it owned.
func TestOwnerAgreesAndMovesLittle(t *testing.T) {
	rdb := newRedis(t)
	var cs []*Cluster
	for i := range 3 {
		c := New(rdb, fmt.Sprintf("http://10.0.0.%d:5000", i+1), "secret")
		if err := c.Join(t.Context()); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		c.heartbeat(t.Context())
	}
	before := map[string]string{}
	counts := map[string]int{}
	for i := range 300 {
		k := fmt.Sprint("blob:", i)
		o := cs[0].Owner(k)
		for _, c := range cs[1:] {
			if c.Owner(k) != o {
				t.Fatalf("replicas disagree on the owner of %s", k)
			}
		}
		before[k] = o
		counts[o]++
	}
	for m, n := range counts {
		if n < 60 {
			t.Errorf("%s owns %d of 300 keys: not spread", m, n)
		}
	}
	gone := cs[2].Self()
	cs[0].Suspect(gone)
	for k, o := range before {
		if now := cs[0].Owner(k); o != gone && now != o {
			t.Fatalf("%s moved from %s to %s though its owner stayed", k, o, now)
		}
	}
}

// TestLeaseTakeOverAndLock: a lease is exclusive, renewed while held and
// released at the end; a holder found unreachable is taken over; Lock runs
// its function on one replica at a time.
func TestLeaseTakeOverAndLock(t *testing.T) {
	rdb := newRedis(t)
	a := New(rdb, "http://a", "s", WithTiming(100*time.Millisecond, time.Second, 300*time.Millisecond))
	b := New(rdb, "http://b", "s", WithTiming(100*time.Millisecond, time.Second, 300*time.Millisecond))
	ctx, cancel := context.WithCancel(t.Context())
	if !a.Acquire(ctx, "x", "") {
		t.Fatal("a could not take a free lease")
	}
	if b.Acquire(t.Context(), "x", "") {
		t.Fatal("b took a held lease")
	}
	time.Sleep(600 * time.Millisecond) // two TTLs: renewal keeps it
	if h := b.Holder(t.Context(), "x"); h != "http://a" {
		t.Fatalf("holder after two TTLs = %q, want a (renewed)", h)
	}
	if !b.Acquire(t.Context(), "x", "http://a") {
		t.Fatal("b could not take over from a holder it found unreachable")
	}
	cancel()
	ran := 0
	if !a.Lock(t.Context(), "evict", func() {
		ran++
		if b.Lock(t.Context(), "evict", func() { ran++ }) {
			t.Error("two replicas held the same lock")
		}
	}) {
		t.Fatal("a could not take a free lock")
	}
	if ran != 1 {
		t.Fatalf("ran %d times", ran)
	}
}
