package upstream

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// scripted answers HEADs with the status in code (0: 200 with a digest),
// after waiting on block when it is set.
func scripted(t *testing.T, code *atomic.Int64, block chan struct{}) (*httptest.Server, *atomic.Int64) {
	hits := new(atomic.Int64)
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if block != nil {
			select {
			case <-block:
			case <-r.Context().Done():
				return
			}
		}
		switch c := int(code.Load()); c {
		case 0:
			w.Header().Set("Docker-Content-Digest", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
		case 429:
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(c)
		default:
			w.WriteHeader(c)
		}
	}))
	t.Cleanup(s.Close)
	return s, hits
}

func newTestClient(t *testing.T, url string, clk *fakeClock) *Client {
	c, err := New("test", url, auth.Credentials{}, WithRetry(1, 0), WithClock(clk.now), WithBreaker(2, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func head(c *Client, ctx context.Context) error {
	_, err := c.ManifestHead(ctx, "a", oci.Reference{Tag: "t"}, nil)
	return err
}

func TestBreakerOpensAndProbes(t *testing.T) {
	code := new(atomic.Int64)
	code.Store(503)
	s, hits := scripted(t, code, nil)
	clk := &fakeClock{t: time.Unix(0, 0)}
	c := newTestClient(t, s.URL, clk)
	for range 5 {
		head(c, t.Context())
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("upstream hit %d times, want 2 (threshold)", n)
	}
	if !c.Health().Down {
		t.Fatal("not down")
	}
	code.Store(0)
	clk.add(2 * time.Second)
	if err := head(c, t.Context()); err != nil || c.Health().Down {
		t.Fatalf("probe: %v, health %+v", err, c.Health())
	}
}

// TestBreakerProbeClientLeaves: a probe whose client leaves does not keep
// the breaker open for ever.
func TestBreakerProbeClientLeaves(t *testing.T) {
	code := new(atomic.Int64)
	code.Store(503)
	block := make(chan struct{})
	s, _ := scripted(t, code, block)
	clk := &fakeClock{t: time.Unix(0, 0)}
	c := newTestClient(t, s.URL, clk)
	close(block)
	head(c, t.Context())
	head(c, t.Context())
	block2 := make(chan struct{})
	s2, _ := scripted(t, code, block2)
	_ = s2
	clk.add(2 * time.Second)
	// The probe: its client gives up while the upstream is slow.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	c.base.Host = s2.Listener.Addr().String()
	head(c, ctx)
	cancel()
	close(block2)
	code.Store(0)
	if err := head(c, t.Context()); err != nil {
		t.Fatalf("after a cancelled probe the next request must probe: %v", err)
	}
}

// TestRateLimitedHoldsOff: after a 429 the upstream is not asked again
// before Retry-After, and a 429 does not count as the upstream being down.
func TestRateLimitedHoldsOff(t *testing.T) {
	code := new(atomic.Int64)
	code.Store(429)
	s, hits := scripted(t, code, nil)
	clk := &fakeClock{t: time.Unix(0, 0)}
	c := newTestClient(t, s.URL, clk)
	for range 3 {
		err := head(c, t.Context())
		if ra, ok := IsTooManyRequests(err); !ok || ra == "" {
			t.Fatalf("want a 429 with Retry-After, got %v", err)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("upstream asked %d times within Retry-After, want 1", n)
	}
	if c.Health().Down || c.Health().LimitedUntil.IsZero() {
		t.Fatalf("health %+v", c.Health())
	}
	code.Store(0)
	clk.add(31 * time.Second)
	if err := head(c, t.Context()); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}

// TestManifestGarbage: an upstream manifest that is too large, does not
// match its Docker-Content-Digest or the digest it was asked by, or is
// shorter than its Content-Length is refused with a clear error.
func TestManifestGarbage(t *testing.T) {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	good := digest.FromBytes(body)
	other := digest.FromString("something else")
	tests := []struct {
		name    string
		ref     oci.Reference
		handler http.HandlerFunc
		want    string
	}{
		{"header digest mismatch", oci.Reference{Tag: "t"}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Docker-Content-Digest", other.String())
			w.Write(body)
		}, "does not match digest"},
		{"asked digest mismatch", oci.Reference{Digest: other}, func(w http.ResponseWriter, r *http.Request) {
			w.Write(body)
		}, "does not match digest"},
		{"too large", oci.Reference{Tag: "t"}, func(w http.ResponseWriter, r *http.Request) {
			w.Write(bytes.Repeat([]byte(" "), oci.MaxManifestSize+1))
		}, "limit"},
		{"short body", oci.Reference{Tag: "t"}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "1000")
			w.Write(body)
		}, "manifest"},
		{"good", oci.Reference{Digest: good}, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write(body)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := httptest.NewServer(tt.handler)
			defer s.Close()
			c, err := New("test", s.URL, auth.Credentials{}, WithRetry(1, 0))
			if err != nil {
				t.Fatal(err)
			}
			m, err := c.ManifestGet(t.Context(), "a", tt.ref, nil)
			if tt.want == "" {
				if err != nil || m.Digest != good {
					t.Fatalf("good manifest: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestBreakerProbesOnePerInterval: while the upstream keeps failing, at
// most one request per probe interval reaches it; the first request after
// it heals (and the interval) is answered and closes the breaker.
func TestBreakerProbesOnePerInterval(t *testing.T) {
	code := new(atomic.Int64)
	code.Store(503)
	s, hits := scripted(t, code, nil)
	clk := &fakeClock{t: time.Unix(0, 0)}
	c := newTestClient(t, s.URL, clk) // threshold 2, interval 1s
	for range 50 {                    // 5 s of requests, one every 100 ms
		head(c, t.Context())
		clk.add(100 * time.Millisecond)
	}
	// 2 to open, then one probe per second.
	if n := hits.Load(); n < 5 || n > 2+5 {
		t.Fatalf("upstream hit %d times in 5 s of requests, want 2 + one per second", n)
	}
	code.Store(0)
	clk.add(time.Second)
	if err := head(c, t.Context()); err != nil || c.Health().Down {
		t.Fatalf("first request after recovery: %v, health %+v", err, c.Health())
	}
}

// TestBreakerScopes: failures of blob requests do not stop manifest
// requests, and the probe of a counted manifest GET is a /v2/ ping.
func TestBreakerScopes(t *testing.T) {
	var blobFail atomic.Bool
	blobFail.Store(true)
	var pings, gets atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
			pings.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
		case strings.Contains(r.URL.Path, "/blobs/"):
			if blobFail.Load() {
				w.WriteHeader(503)
				return
			}
			w.Header().Set("Content-Length", "0")
		default:
			gets.Add(1)
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write([]byte("{}"))
		}
	}))
	t.Cleanup(s.Close)
	clk := &fakeClock{t: time.Unix(0, 0)}
	c := newTestClient(t, s.URL, clk)
	d := digest.FromString("x")
	for range 3 {
		c.BlobHead(t.Context(), "a", d)
	}
	h := c.Health()
	if !h.Down || len(h.Breakers) != 1 || h.Breakers[0].Scope != ScopeBlobs || !h.Breakers[0].Open {
		t.Fatalf("after blob failures: %+v", h)
	}
	if _, err := c.ManifestGet(t.Context(), "a", oci.Reference{Tag: "t"}, nil); err != nil {
		t.Fatalf("manifest with the blobs breaker open: %v", err)
	}
	// Open the manifests breaker, then probe it with a GET: a ping goes
	// first.
	s2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }))
	host := c.base.Host
	c.base.Host = s2.Listener.Addr().String()
	for range 3 {
		c.ManifestGet(t.Context(), "a", oci.Reference{Tag: "t"}, nil)
	}
	s2.Close()
	c.base.Host = host
	if !scopeOpen(c, ScopeManifests) {
		t.Fatalf("manifests breaker not open: %+v", c.Health())
	}
	clk.add(2 * time.Second)
	pings.Store(0)
	gets.Store(0)
	if _, err := c.ManifestGet(t.Context(), "a", oci.Reference{Tag: "t"}, nil); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if pings.Load() != 1 || gets.Load() != 1 {
		t.Fatalf("probe of a manifest GET: %d pings, %d GETs; want a ping, then the GET", pings.Load(), gets.Load())
	}
	if scopeOpen(c, ScopeManifests) {
		t.Fatal("manifests breaker still open after a successful probe")
	}
}

func scopeOpen(c *Client, scope string) bool {
	for _, b := range c.Health().Breakers {
		if b.Scope == scope {
			return b.Open
		}
	}
	return false
}

// TestManifestContentTypes: a manifest is served only with a manifest
// media type: the upstream's when it is one, else the body's; a page
// (text/html with a matching digest) is refused.
func TestManifestContentTypes(t *testing.T) {
	oci1 := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`
	bare := `{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:` + strings.Repeat("a", 64) + `","size":1},"layers":[]}`
	html := `<html><script>alert(document.cookie)</script></html>`
	for _, c := range []struct {
		name, ctype, body, want string
	}{
		{"manifest type", "application/vnd.docker.distribution.manifest.v2+json", oci1, "application/vnd.docker.distribution.manifest.v2+json"},
		{"with parameters", "application/vnd.oci.image.manifest.v1+json; charset=utf-8", oci1, "application/vnd.oci.image.manifest.v1+json"},
		{"none, body says", "", oci1, "application/vnd.oci.image.manifest.v1+json"},
		{"text/plain, body has no mediaType", "text/plain", bare, "application/vnd.oci.image.manifest.v1+json"},
		{"html with a matching digest", "text/html", html, ""},
		{"json that is no manifest", "application/json", `{"a":1}`, ""},
		{"manifest type, odd body mediaType", "text/html", `{"schemaVersion":2,"mediaType":"text/html","config":{}}`, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := digest.FromString(c.body)
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.ctype != "" {
					w.Header().Set("Content-Type", c.ctype)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing by net/http either
				}
				w.Header().Set("Docker-Content-Digest", d.String())
				w.Write([]byte(c.body))
			}))
			defer s.Close()
			cl, err := New("test", s.URL, auth.Credentials{}, WithRetry(1, 0))
			if err != nil {
				t.Fatal(err)
			}
			m, err := cl.ManifestGet(t.Context(), "a", oci.Reference{Digest: d}, nil)
			switch {
			case c.want == "" && err == nil:
				t.Fatalf("served as %q", m.MediaType)
			case c.want != "" && err != nil:
				t.Fatal(err)
			case c.want != "" && m.MediaType != c.want:
				t.Fatalf("media type %q, want %q", m.MediaType, c.want)
			}
		})
	}
}

// TestNewRedactsURL: an invalid upstream URL is named in the error
// without its password.
func TestNewRedactsURL(t *testing.T) {
	for _, raw := range []string{"ftp://mirror:PW@host", "https://mirror:PW@", "https://mirror:PW@host\x7f", "mirror:PW@host"} {
		_, err := New("x", raw, auth.Credentials{})
		if err == nil || strings.Contains(err.Error(), "PW") {
			t.Errorf("New(%q): %v", raw, err)
		}
	}
}
