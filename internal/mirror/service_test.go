package mirror

import (
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

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
	dir := t.TempDir()
	store, err := disk.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	index, err := cacheindex.Open(filepath.Join(dir, "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { index.Close() })
	up, err := upstream.New("docker.io", hub.URL, auth.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	fills := fill.New(store, FillIndexing(index, slog.New(slog.DiscardHandler), nil)...)
	t.Cleanup(fills.Close)
	s := New(store, index, fills, []*Upstream{{Name: "docker.io", Client: up}},
		append([]Option{WithPrefetch(false, 1), WithClock(c.Now)}, opts...)...)
	t.Cleanup(s.Close)
	return s
}

// asked counts the upstream's manifest requests for ref with a token:
// what Docker Hub counts (the unauthenticated first try, answered by the
// token challenge, is not a pull).
func asked(hub *testenv.Hub, method, repo, ref string) int {
	n := 0
	for _, q := range hub.Requests() {
		if q.Server == "registry" && q.Kind == testenv.KindManifest && q.Method == method && q.Repo == repo && q.Ref == ref && q.Auth {
			n++
		}
	}
	return n
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
// the configured window (tested away from the default) and answered
// without asking again; after it, the upstream is asked again; 0 asks
// every time.
func TestNegativeAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ttl  time.Duration
		// upstream GETs after the first answer, a second one within
		// the window, and a third one past it.
		gets [3]int
	}{
		{"remembered for 5s", 5 * time.Second, [3]int{1, 1, 2}},
		{"0 remembers nothing", 0, [3]int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hub := testenv.NewHub(t)
			imgs := hub.Seed(t)
			c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			s := newService(t, hub, c, WithNegativeTTL(tt.ttl))
			req := Request{Upstream: "docker.io", Repo: imgs.Single.Repo, Accept: []string{"application/vnd.docker.distribution.manifest.v2+json"}}
			ask := func(step int, wantCache CacheResult) {
				t.Helper()
				_, out, err := s.Manifest(t.Context(), req, tagRef(t, "no-such-tag"))
				var we *oci.Error
				if err2 := wire(err, oci.ErrManifestUnknown); !errors.As(err2, &we) || we.Code != oci.ErrManifestUnknown {
					t.Fatalf("step %d: %v, want MANIFEST_UNKNOWN", step, err)
				}
				if wantCache != "" && out.Cache != wantCache {
					t.Errorf("step %d: cache %q, want %q", step, out.Cache, wantCache)
				}
				if got := asked(hub, http.MethodGet, req.Repo, "no-such-tag") + asked(hub, http.MethodHead, req.Repo, "no-such-tag"); got != tt.gets[step] {
					t.Errorf("step %d: the upstream was asked %d times, want %d", step, got, tt.gets[step])
				}
			}
			ask(0, "")
			c.Add(tt.ttl / 2)
			if tt.ttl > 0 {
				ask(1, CacheNegative)
			} else {
				ask(1, "")
			}
			c.Add(tt.ttl + time.Second)
			ask(2, "")
		})
	}
}

// TestFreshnessAndRevalidation: a tag is answered from the cache while
// fresh (no upstream request), then revalidated with a HEAD (never a
// counted GET while the digest is held), and fetched again when it moved.
func TestFreshnessAndRevalidation(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, hub, c, WithFreshness(time.Minute))
	img := imgs.Single
	req := Request{Upstream: "docker.io", Repo: img.Repo, Accept: []string{"application/vnd.docker.distribution.manifest.v2+json"}}
	steps := []struct {
		name        string
		advance     time.Duration
		cache       CacheResult
		gets, heads int // upstream manifest requests so far
	}{
		{"first pull", 0, CacheMiss, 1, 0},
		{"fresh", 30 * time.Second, CacheHit, 1, 0},
		{"stale: a HEAD, no GET", time.Minute, CacheRevalidated, 1, 1},
		{"fresh again", 10 * time.Second, CacheHit, 1, 1},
	}
	for _, st := range steps {
		c.Add(st.advance)
		m, out, err := s.Manifest(t.Context(), req, tagRef(t, img.Tag))
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if m.Digest != img.Digest || out.Cache != st.cache {
			t.Errorf("%s: %s %q, want %s %q", st.name, m.Digest, out.Cache, img.Digest, st.cache)
		}
		gets, heads := asked(hub, http.MethodGet, img.Repo, img.Tag), asked(hub, http.MethodHead, img.Repo, img.Tag)
		if gets != st.gets || heads != st.heads {
			t.Errorf("%s: upstream GETs %d HEADs %d, want %d and %d", st.name, gets, heads, st.gets, st.heads)
		}
	}
}

// TestBudgetReserve: background work (regcache warm) never spends the
// upstream's last reserved counted pulls; a client's pull does, and a
// refusal is the mirror's own (an *oci.Error), never an upstream failure.
func TestBudgetReserve(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.SetRateLimit(100, 5)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newService(t, hub, c, WithBudgetReserve(10, 0))
	img := imgs.Single
	req := Request{Upstream: "docker.io", Repo: img.Repo, Accept: []string{"application/vnd.docker.distribution.manifest.v2+json"}}
	// A client's pull learns the remaining budget (and spends one).
	if _, _, err := s.Manifest(t.Context(), req, tagRef(t, img.Tag)); err != nil {
		t.Fatal(err)
	}
	bg := req
	bg.Background = true
	other := imgs.ManifestList
	bg.Repo = other.Repo
	_, _, err := s.Manifest(t.Context(), bg, tagRef(t, other.Tag))
	var we *oci.Error
	if !errors.As(err, &we) {
		t.Fatalf("background pull with 4 of 100 left and a reserve of 10: %v, want the mirror's refusal", err)
	}
	if c, _ := upstream.Classify(err); c != upstream.NotUpstream {
		t.Errorf("the reserve's refusal reads as an upstream failure (%s): it would fall back", c)
	}
	if n := asked(hub, http.MethodGet, other.Repo, other.Tag); n != 0 {
		t.Errorf("the refused background pull sent %d GETs", n)
	}
	req.Repo = other.Repo
	if _, _, err := s.Manifest(t.Context(), req, tagRef(t, other.Tag)); err != nil {
		t.Errorf("a client's pull within the reserve: %v", err)
	}
}
