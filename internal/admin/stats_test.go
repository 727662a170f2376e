package admin

import (
	"fmt"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/registry"
)

// TestTopKBounded: the top list keeps at most its size of counters
// however many repositories pass, and the heavy ones stay on top.
func TestTopKBounded(t *testing.T) {
	tk := newTopK(16)
	for i := range 10000 {
		tk.add(repoKey{"docker.io", fmt.Sprintf("noise/%d", i)}, 1)
		if i%10 == 0 {
			tk.add(repoKey{"docker.io", "library/heavy"}, 5)
		}
		if i%20 == 0 {
			tk.add(repoKey{"ghcr.io", "team/second"}, 5)
		}
	}
	if len(tk.entries) > 16 {
		t.Fatalf("%d counters, want at most 16", len(tk.entries))
	}
	top := tk.top(2)
	if len(top) != 2 || top[0].key.repo != "library/heavy" || top[1].key.repo != "team/second" {
		t.Fatalf("top: %+v", top)
	}
	if top[0].count < 5000 || top[0].count-top[0].over > 5000 {
		t.Errorf("heavy counted %d (over by at most %d), true weight 5000", top[0].count, top[0].over)
	}
}

// TestStatsResults: requests are sorted into the closed set of results;
// pulls saved are manifest GETs answered from the cache; the error ring
// keeps the last 20, newest first.
func TestStatsResults(t *testing.T) {
	s := newStats(nil, map[string]bool{})
	now := time.Now()
	for _, sv := range []registry.Served{
		{Kind: "manifest", Method: "GET", Cache: "hit", Status: 200, Bytes: 10, Upstream: "docker.io", Repo: "library/a"},
		{Kind: "manifest", Method: "HEAD", Cache: "hit", Status: 200, Upstream: "docker.io", Repo: "library/a"},
		{Kind: "manifest", Method: "GET", Cache: "revalidated", Status: 200, Bytes: 10, Upstream: "docker.io", Repo: "library/a"},
		{Kind: "manifest", Method: "GET", Cache: "stale", Status: 200, Bytes: 10, Upstream: "docker.io", Repo: "library/a", Stale: "upstream down"},
		{Kind: "blob", Method: "GET", Cache: "miss", Status: 200, Bytes: 100, Upstream: "docker.io", Repo: "library/a"},
		{Kind: "blob", Method: "GET", Cache: "miss", Joined: true, Status: 200, Bytes: 100, Upstream: "docker.io", Repo: "library/a"},
		{Kind: "manifest", Method: "GET", Status: 401, ErrCode: "UNAUTHORIZED"},
		{Kind: "manifest", Method: "GET", Cache: "miss", Status: 429, ErrCode: "TOOMANYREQUESTS", Upstream: "docker.io", Repo: "library/b"},
		{Kind: "manifest", Method: "GET", Status: 400, ErrCode: "NAME_INVALID"},
		{Kind: "base", Method: "GET", Status: 401},
		{Kind: "blob", Method: "GET", Cache: "miss", Status: 0, Bytes: 5, Upstream: "docker.io", Repo: "library/a"},
	} {
		sv.Time = now
		s.observe(sv)
	}
	tt := s.totals()
	want := map[string]int64{resultHit: 3, resultStale: 1, resultMiss: 1, resultCoalesced: 1, resultDenied: 1, resultError: 3}
	for r, n := range want {
		if got := tt.result(r); got != n {
			t.Errorf("%s: %d, want %d", r, got, n)
		}
	}
	if tt.Saved["docker.io"] != 3 {
		t.Errorf("pulls saved %d, want 3 (hit, revalidated and stale GETs; not the HEAD)", tt.Saved["docker.io"])
	}
	if tt.BytesCache != 30 || tt.BytesUp != 100 || tt.BytesJoin != 100 {
		t.Errorf("bytes: %+v", tt)
	}
	if r := tt.hitRatio(); r != 4.0/6 {
		t.Errorf("hit ratio %v, want 4/6", r)
	}
	if errs := s.lastErrors(); len(errs) != 5 || errs[0].Status != 0 || errs[len(errs)-1].Result != resultStale {
		t.Errorf("errors: %+v", errs)
	}
	for i := range 30 {
		s.observe(registry.Served{Kind: "blob", Method: "GET", Status: 500 + i%5, ErrMessage: fmt.Sprint(i), Time: now})
	}
	errs := s.lastErrors()
	if len(errs) != maxErrors || errs[0].Reason != "29" || errs[maxErrors-1].Reason != "10" {
		t.Errorf("ring: %d errors, newest %q, oldest %q", len(errs), errs[0].Reason, errs[len(errs)-1].Reason)
	}
}

// BenchmarkStatsObserve is the dashboard's cost per answered request (the
// registry's observer), from 32 goroutines over 1000 repositories:
//
//	go test -run '^$' -bench BenchmarkStatsObserve -count 6 ./internal/admin
func BenchmarkStatsObserve(b *testing.B) {
	s := newStats(nil, map[string]bool{})
	repos := make([]string, 1000)
	for i := range repos {
		repos[i] = fmt.Sprintf("library/r%d", i)
	}
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			s.observe(registry.Served{Kind: "manifest", Method: "GET", Cache: "hit", Status: 200, Bytes: 1500, Upstream: "docker.io", Repo: repos[i%len(repos)]})
		}
	})
}
