package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
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
	la := a.Acquire(ctx, "x", "")
	if la == nil {
		t.Fatal("a could not take a free lease")
	}
	if b.Acquire(t.Context(), "x", "") != nil {
		t.Fatal("b took a held lease")
	}
	time.Sleep(600 * time.Millisecond) // two TTLs: renewal keeps it
	h := b.Holder(t.Context(), "x")
	if replicaOf(h) != "http://a" || h != la.token {
		t.Fatalf("holder after two TTLs = %q, want a's lease %q (renewed)", h, la.token)
	}
	if b.Acquire(t.Context(), "x", h) == nil {
		t.Fatal("b could not take over from a holder it found unreachable")
	}
	select {
	case <-la.Lost:
	case <-time.After(time.Second):
		t.Fatal("a was not told it lost its lease")
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

// TestLeaseLossCutsTheFetch: a lease whose key vanishes (Redis DEL) tells
// its holder at the next renewal, and the upstream body read under it is
// cut then, not at its end.
func TestLeaseLossCutsTheFetch(t *testing.T) {
	rdb := newRedis(t)
	a := New(rdb, "http://a", "s", WithTiming(100*time.Millisecond, time.Second, 300*time.Millisecond))
	l := a.Acquire(t.Context(), "blob:x", "")
	if l == nil {
		t.Fatal("a could not take a free lease")
	}
	pr, pw := io.Pipe()
	defer pw.Close()
	b := &upstream.Blob{Body: pr}
	l.guard(b)
	body := b.Body
	defer body.Close()
	if err := rdb.Del(t.Context(), a.key("lease:blob:x")).Err(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, body)
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, errLeaseLost) {
			t.Fatalf("read after the lease was lost: %v, want errLeaseLost", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the fetch went on after its lease was deleted")
	}
}

// TestLeaseNamesTheFill: two fills of a digest on one replica hold
// different lease values (the second does not share the first's), and a
// restarted replica at the same URL takes its predecessor's live lease
// over instead of adopting it as its own.
func TestLeaseNamesTheFill(t *testing.T) {
	rdb := newRedis(t)
	old := New(rdb, "http://a:1", "s", WithTiming(100*time.Millisecond, time.Second, 10*time.Second))
	l := old.Acquire(t.Context(), "blob:x", "")
	if l == nil {
		t.Fatal("no lease")
	}
	if old.Acquire(t.Context(), "blob:x", "") != nil {
		t.Fatal("a second fill on the same replica took a held lease")
	}
	// The restarted process: same URL, its predecessor's lease still live.
	fresh := New(rdb, "http://a:1", "s", WithTiming(100*time.Millisecond, time.Second, 10*time.Second))
	if err := fresh.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	direct := func(ctx context.Context, offset int64) (*upstream.Blob, error) {
		return &upstream.Blob{Body: io.NopCloser(strings.NewReader("x")), Offset: offset, Size: 1}, nil
	}
	d := digest.Digest("sha256:" + strings.Repeat("0", 64))
	if err := rdb.Set(t.Context(), fresh.key("lease:blob:"+d.String()), l.token, 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	b, err := fresh.Source("up", "repo", d, 1, false, direct)(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	b.Body.Close()
	h := fresh.Holder(t.Context(), "blob:"+d.String())
	if h == l.token || !fresh.mine(h) {
		t.Fatalf("lease after the restarted replica's fill = %q, predecessor's %q: want a lease of the new process", h, l.token)
	}
}

// TestRedisDownKeepsMembers: with Redis away the replicas keep the last
// live set they read, so they still agree on every digest's owner (and
// stream from it) instead of each taking itself for the only one.
func TestRedisDownKeepsMembers(t *testing.T) {
	srv := testenv.NewRedis(t)
	o, err := redis.ParseURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var cs []*Cluster
	for i := range 3 {
		rdb := redis.NewClient(o)
		t.Cleanup(func() { rdb.Close() })
		c := New(rdb, fmt.Sprintf("http://10.0.0.%d:5000", i+1), "secret", WithTiming(100*time.Millisecond, time.Second, time.Second))
		if err := c.Join(t.Context()); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		c.heartbeat(t.Context())
	}
	srv.Stop()
	for _, c := range cs {
		if c.heartbeat(t.Context()) {
			t.Fatal("a heartbeat succeeded with Redis stopped")
		}
		if n := len(c.Live()); n != 3 {
			t.Fatalf("%s takes %d replicas as live with Redis away, want the last known 3", c.Self(), n)
		}
	}
	for i := range 50 {
		k := fmt.Sprint("blob:", i)
		if a, b, c := cs[0].Owner(k), cs[1].Owner(k), cs[2].Owner(k); a != b || b != c {
			t.Fatalf("owners of %s disagree with Redis away: %s %s %s", k, a, b, c)
		}
	}
}

// TestAnsweringPeerNotSuspected: a replica that answers the internal
// endpoint with an error is alive: it is not suspected (its leases are not
// taken over), and the asking fill fetches for itself.
func TestAnsweringPeerNotSuspected(t *testing.T) {
	rdb := newRedis(t)
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer peer.Close()
	p := New(rdb, peer.URL, "secret-secret-secret")
	if err := p.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	a := New(rdb, "http://127.0.0.1:1", "secret-secret-secret")
	if err := a.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A digest the peer owns.
	var d digest.Digest
	for i := 0; ; i++ {
		d = digest.FromString(fmt.Sprint(i))
		if a.Owner("blob:"+d.String()) == peer.URL {
			break
		}
	}
	direct := func(ctx context.Context, offset int64) (*upstream.Blob, error) {
		return &upstream.Blob{Body: io.NopCloser(strings.NewReader("x")), Offset: offset, Size: 1}, nil
	}
	b, err := a.Source("up", "repo", d, 1, false, direct)(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	b.Body.Close()
	if !a.isLive(peer.URL) {
		t.Fatal("a peer that answered 503 was suspected")
	}
}

// TestFrozenPeerNotWaitedFor: a replica that accepts the connection but
// never answers (frozen: the kernel still accepts) is given up as soon as
// it stops heartbeating, not after the two-minute header timeout, and the
// fill fetches for itself.
func TestFrozenPeerNotWaitedFor(t *testing.T) {
	rdb := newRedis(t)
	release := make(chan struct{})
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer peer.Close()
	defer close(release)
	timing := WithTiming(100*time.Millisecond, time.Second, time.Second)
	p := New(rdb, peer.URL, "secret-secret-secret", timing)
	if err := p.Join(t.Context()); err != nil { // one beat, then silence
		t.Fatal(err)
	}
	a := New(rdb, "http://127.0.0.1:1", "secret-secret-secret", timing)
	if err := a.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go a.Run(ctx)
	var d digest.Digest
	for i := 0; ; i++ {
		d = digest.FromString(fmt.Sprint(i))
		if a.Owner("blob:"+d.String()) == peer.URL {
			break
		}
	}
	direct := func(ctx context.Context, offset int64) (*upstream.Blob, error) {
		return &upstream.Blob{Body: io.NopCloser(strings.NewReader("x")), Offset: offset, Size: 1}, nil
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		b, err := a.Source("up", "repo", d, 1, false, direct)(ctx, 0)
		if err == nil {
			b.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gave the silent replica up after %s", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the fill still waits for a replica that stopped heartbeating")
	}
}

// TestLapsedLeaseHandsOver: what a fill said it had received (as it reads
// its body under the lease) reaches the replica that takes the lease once
// it lapsed, as a takeover from that fill, not a cold miss; a lease
// released at the fill's end takes what it said along.
func TestLapsedLeaseHandsOver(t *testing.T) {
	rdb := newRedis(t)
	timing := WithTiming(100*time.Millisecond, time.Second, 300*time.Millisecond)
	a, b := New(rdb, "http://a", "s", timing), New(rdb, "http://b", "s", timing)
	actx, stop := context.WithCancel(t.Context())
	la := a.Acquire(actx, "blob:x", "")
	if la == nil {
		t.Fatal("a could not take a free lease")
	}
	body := &upstream.Blob{Body: io.NopCloser(strings.NewReader(strings.Repeat("x", 5<<20))), Offset: 1 << 20}
	la.guard(body)
	if _, err := io.Copy(io.Discard, body.Body); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * haveEvery)
	la.received(6 << 20) // said after haveEvery: published
	deadline := time.Now().Add(2 * time.Second)
	for a.reportedHave(t.Context(), "blob:x", la.token) != 6<<20 {
		if time.Now().After(deadline) {
			t.Fatalf("a said it had %d bytes, want %d", a.reportedHave(t.Context(), "blob:x", la.token), 6<<20)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a is frozen: its lease lapses (here: its key goes), b takes it.
	if err := rdb.Del(t.Context(), a.key("lease:blob:x")).Err(); err != nil {
		t.Fatal(err)
	}
	bctx, bstop := context.WithCancel(t.Context())
	defer bstop()
	lb := b.Acquire(bctx, "blob:x", "")
	if lb == nil || lb.lapsed != la.token || lb.lapsedHave != 6<<20 {
		t.Fatalf("b's lease after a's lapsed: %+v, want a's value %q with 6 MiB", lb, la.token)
	}
	stop()
	bstop()
	a.Wait()
	b.Wait()
	// b released its lease at its fill's end; a's word stays only if
	// nobody else said more since (here, b said nothing).
	c := New(rdb, "http://c", "s", timing)
	cctx, cstop := context.WithCancel(t.Context())
	defer cstop()
	lc := c.Acquire(cctx, "blob:x", "")
	if lc == nil {
		t.Fatal("c could not take the released lease")
	}
	lc.received(1)
	for c.reportedHave(t.Context(), "blob:x", lc.token) != 1 {
		time.Sleep(10 * time.Millisecond)
	}
	cstop()
	c.Wait()
	if v, err := rdb.Get(t.Context(), c.haveKey("blob:x")).Result(); err == nil {
		t.Errorf("a released lease left what its fill said: %q", v)
	}
}
