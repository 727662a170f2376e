package mirror

import (
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// manifestAsks is how many manifest requests (GET and HEAD) the upstream
// got for repo:ref.
func manifestAsks(f *fakeUpstream, repo, ref string) int {
	return f.count(http.MethodGet, "manifests", repo, ref) + f.count(http.MethodHead, "manifests", repo, ref)
}

// clock is a settable time source for the service's freshness and
// negative-answer windows.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newService is the content service over a real store and index in a
// temporary directory, in front of the Docker Hub stand-in.
func newService(t testing.TB, hub *testenv.Hub, c *clock, opts ...Option) *Service {
	t.Helper()
	s, _ := newServiceAt(t, t.TempDir(), hub, c, opts...)
	return s
}

// newServiceAt is newService over the cache in dir; stop closes the
// service and its index (for a restart over the same cache), and is also
// run at the test's end.
func newServiceAt(t testing.TB, dir string, hub *testenv.Hub, c *clock, opts ...Option) (s *Service, stop func()) {
	t.Helper()
	store, err := disk.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	index, err := cacheindex.Open(filepath.Join(dir, "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	up, err := upstream.New("docker.io", hub.URL, auth.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	fills := fill.New(store)
	s = New(store, index, fills, []*Upstream{{Name: "docker.io", Client: up}},
		append([]Option{WithPrefetch(false, 1), WithClock(c.Now)}, opts...)...)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			s.Close()
			fills.Close()
			index.Close()
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func tagRef(t *testing.T, tag string) oci.Reference {
	t.Helper()
	r, err := oci.ParseReference(tag)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestNegativeAnswers: an upstream "not found" for a tag is remembered for
// negative_ttl (tested away from the default, and at the default) and
// answered without asking again; past it the upstream is asked again, and
// a tag pushed meanwhile is found; 0 remembers nothing.
func TestNegativeAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ttl  time.Duration // 0 with def: the default
		def  bool
		// upstream requests after the first answer, after a second ask
		// within the window, and after a third past it (the tag pushed).
		asks   [3]int
		within time.Duration
	}{
		{"remembered for 5s", 5 * time.Second, false, [3]int{1, 1, 2}, 4 * time.Second},
		{"the default, 30s", 0, true, [3]int{1, 1, 2}, 29 * time.Second},
		{"0 remembers nothing", 0, false, [3]int{1, 2, 3}, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				var opts []Option
				if !tt.def {
					opts = append(opts, WithNegativeTTL(tt.ttl))
				}
				e := newEnv(t, []upstreamSpec{{name: "a.test"}}, opts...)
				up := e.ups["a.test"]
				up.push(t, e.net, "team/app", "1", 1)
				up.reset()
				req := Request{Upstream: "a.test", Repo: "team/app"}
				ask := func(step int, wantCache CacheResult, found bool) {
					t.Helper()
					_, out, err := e.manifest(t, req, "2")
					switch {
					case found && err != nil:
						t.Fatalf("step %d: %v, want the tag pushed meanwhile", step, err)
					case !found && code(err) != oci.ErrManifestUnknown:
						t.Fatalf("step %d: %v, want MANIFEST_UNKNOWN", step, err)
					}
					if wantCache != "" && out.Cache != wantCache {
						t.Errorf("step %d: cache %q, want %q", step, out.Cache, wantCache)
					}
					if got := manifestAsks(up, "team/app", "2"); got != tt.asks[step] {
						t.Errorf("step %d: the upstream was asked %d times, want %d", step, got, tt.asks[step])
					}
				}
				ask(0, "", false)
				time.Sleep(tt.within)
				if tt.asks[1] == tt.asks[0] {
					ask(1, CacheNegative, false)
				} else {
					ask(1, "", false)
				}
				up.push(t, e.net, "team/app", "2", 2)
				time.Sleep(31*time.Second - tt.within)
				ask(2, CacheMiss, true)
			})
		})
	}
}

// TestFreshnessAndRevalidation: a tag is answered from the cache while
// fresh (no upstream request), then revalidated with a HEAD (never a
// counted GET while the digest is held); a moved tag is fetched once by
// its new digest; an upstream failure serves the last good digest, stale.
func TestFreshnessAndRevalidation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, []upstreamSpec{{name: "a.test"}}, WithFreshness(time.Minute))
		up := e.ups["a.test"]
		first := up.push(t, e.net, "team/app", "1", 1)
		up.reset()
		req := Request{Upstream: "a.test", Repo: "team/app"}
		var moved image
		steps := []struct {
			name        string
			advance     time.Duration
			before      func()
			cache       CacheResult
			want        func() image
			gets, heads int // upstream requests for the tag so far
			byDigest    int // GETs of the moved tag's manifest by digest
		}{
			{"first pull", 0, nil, CacheMiss, func() image { return first }, 1, 0, 0},
			{"fresh", 30 * time.Second, nil, CacheHit, func() image { return first }, 1, 0, 0},
			{"stale: a HEAD, no GET", time.Minute, nil, CacheRevalidated, func() image { return first }, 1, 1, 0},
			{"fresh again", 10 * time.Second, nil, CacheHit, func() image { return first }, 1, 1, 0},
			{"moved: fetched once by digest", time.Minute, func() { moved = up.push(t, e.net, "team/app", "1", 2) }, CacheMiss, func() image { return moved }, 1, 2, 1},
			{"upstream down: the last good digest, stale", time.Minute, func() { up.setFail("manifests", http.StatusServiceUnavailable) }, CacheStale, func() image { return moved }, 1, 3, 1},
		}
		for _, st := range steps {
			time.Sleep(st.advance)
			if st.before != nil {
				st.before()
			}
			m, out, err := e.manifest(t, req, "1")
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if want := st.want(); m.Digest != want.digest || out.Cache != st.cache {
				t.Errorf("%s: %s %q, want %s %q", st.name, m.Digest, out.Cache, want.digest, st.cache)
			}
			gets, heads := up.count(http.MethodGet, "manifests", "team/app", "1"), up.count(http.MethodHead, "manifests", "team/app", "1")
			if gets != st.gets || heads != st.heads {
				t.Errorf("%s: upstream GETs %d HEADs %d of the tag, want %d and %d", st.name, gets, heads, st.gets, st.heads)
			}
			if moved.digest != "" {
				if n := up.count(http.MethodGet, "manifests", "team/app", moved.digest.String()); n != st.byDigest {
					t.Errorf("%s: %d GETs of the new digest, want %d", st.name, n, st.byDigest)
				}
			}
		}
	})
}

// TestBudgetReserve: background work (regcache warm) never spends the
// upstream's last reserved counted pulls (a count, or a share of its
// ratelimit-limit); a client's pull does; the reserve is renewed once the
// upstream's window has passed since it last said. A refusal is the
// mirror's own 429 with a Retry-After, never an upstream failure: nothing
// falls back to the chain's member.
func TestBudgetReserve(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		count      int
		percent    float64
		limit      int // 0: the upstream says no limit
		remaining  int // after the client's first pull
		background bool
		wait       time.Duration // before the pull
		refused    bool
	}{
		{"background above the reserve", 10, 0, 100, 50, true, 0, false},
		{"background at the reserve", 10, 0, 100, 5, true, 0, true},
		{"background at the reserve, a share of the limit", 0, 10, 100, 5, true, 0, true},
		{"a client's pull spends the reserve", 10, 0, 100, 5, false, 0, false},
		{"the window passed: renewed", 10, 0, 100, 5, true, 61 * time.Second, false},
		{"no limit said", 10, 0, 0, 0, true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, []upstreamSpec{{name: "a.test", fallback: []string{"m.test"}}, {name: "m.test", trustedTags: true}},
					WithBudgetReserve(tt.count, tt.percent))
				up, m := e.ups["a.test"], e.ups["m.test"]
				up.push(t, e.net, "team/app", "1", 1)
				up.push(t, e.net, "team/other", "1", 2)
				m.push(t, e.net, "team/other", "1", 2)
				up.window = 60
				up.setRateLimit(tt.limit, tt.remaining+1)
				up.reset()
				m.reset()
				// A client's pull learns the remaining budget (and spends one).
				if _, _, err := e.manifest(t, Request{Upstream: "a.test", Repo: "team/app"}, "1"); err != nil {
					t.Fatal(err)
				}
				time.Sleep(tt.wait)
				_, _, err := e.manifest(t, Request{Upstream: "a.test", Repo: "team/other", Background: tt.background}, "1")
				if !tt.refused {
					if err != nil {
						t.Fatalf("pull: %v, want it served", err)
					}
					return
				}
				var we *oci.Error
				if !errors.As(err, &we) || we.Code != oci.ErrTooManyRequests {
					t.Fatalf("background pull at the reserve: %v, want the mirror's 429", err)
				}
				if ra, err := strconv.Atoi(we.RetryAfter); err != nil || ra <= 0 || ra > 60 {
					t.Errorf("Retry-After %q, want seconds within the 60s window", we.RetryAfter)
				}
				if c, _ := upstream.Classify(err); c != upstream.NotUpstream {
					t.Errorf("the refusal reads as an upstream failure (%s): it would fall back", c)
				}
				if n := manifestAsks(up, "team/other", ""); n != 0 {
					t.Errorf("the refused pull sent %d manifest requests", n)
				}
				if n := manifestAsks(m, "", ""); n != 0 {
					t.Errorf("the refused pull fell back: the member got %d manifest requests", n)
				}
			})
		})
	}
}
