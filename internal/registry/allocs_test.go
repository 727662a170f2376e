package registry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// discardWriter is a response writer that keeps nothing and, like
// net/http's own, takes a body by ReadFrom (without reading the file: the
// allocations measured are the handler's).
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		n := lr.N
		lr.N = 0
		return n, nil
	}
	return io.Copy(io.Discard, r)
}

// TestHitAllocations holds the allocations of one warm hit, handler only
// (the request is built once; net/http's own per-request allocations are
// not counted). The bounds are what the hit path costs now (issue 28):
// a change that adds allocations to every hit fails here.
func TestHitAllocations(t *testing.T) {
	e := newEnv(t, envOptions{freshness: time.Hour, quiet: true})
	img := e.imgs.Single
	layer := img.Layers[0]
	blob := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
	for _, p := range []string{"/v2/" + img.Repo + "/manifests/" + img.Tag, "/v2/" + img.Repo + "/manifests/" + string(img.Digest), blob} {
		if r := e.do(t, "GET", p); r.status != 200 {
			t.Fatalf("warm-up %s: %d", p, r.status)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := e.store.Stat(t.Context(), layer.Digest); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the layer was not committed")
		}
	}
	// The access log's metrics counted too, as the app has them.
	h := New(e.content, WithMetrics(metrics.New(prometheus.NewRegistry()))).Handler()
	accept := strings.Join(oci.ManifestMediaTypes, ", ")
	for _, c := range []struct {
		method, path string
		max          float64
	}{
		{"GET", "/v2/" + img.Repo + "/manifests/" + img.Tag, 6},
		{"HEAD", "/v2/" + img.Repo + "/manifests/" + img.Tag, 6},
		{"GET", "/v2/" + img.Repo + "/manifests/" + string(img.Digest), 6},
		{"GET", blob, 31},
	} {
		req, _ := http.NewRequest(c.method, e.ts.URL+c.path, nil)
		req.Header.Set("Accept", accept)
		req.RemoteAddr, req.RequestURI = "127.0.0.1:40000", req.URL.RequestURI()
		var status int
		n := 1e9
		for range 3 { // the least of three: a blob hit reads the index only while its entry is not cached
			n = min(n, testing.AllocsPerRun(100, func() {
				w := &discardWriter{h: http.Header{}}
				h.ServeHTTP(w, req)
				status = w.status
			}))
		}
		if status != 0 && status != 200 {
			t.Fatalf("%s %s: %d", c.method, c.path, status)
		}
		w := &discardWriter{h: http.Header{}}
		h.ServeHTTP(w, req)
		for k := range w.h { // the shared values are set by index: keys must be canonical
			if k != http.CanonicalHeaderKey(k) {
				t.Errorf("%s %s: header key %q is not canonical (%q)", c.method, c.path, k, http.CanonicalHeaderKey(k))
			}
		}
		t.Logf("%s %s: %.0f allocations", c.method, c.path, n)
		if n > c.max {
			t.Errorf("%s %s: %.0f allocations per hit, want at most %.0f", c.method, c.path, n, c.max)
		}
	}
}

// TestV2Routes: the fast path to the API answers every path as a ServeMux
// with the patterns /v2/ and /v2 does: the API for clean paths under /v2,
// the mux's redirect for unclean ones, 404 elsewhere.
func TestV2Routes(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Api", r.URL.Path) })
	mux := http.NewServeMux()
	mux.Handle("/v2/", api)
	mux.Handle("/v2", api)
	fast := v2Routes(api)
	for _, target := range []string{
		"/v2", "/v2/", "/v2/library/alpine/manifests/latest", "/v2/x/blobs/sha256:ab", "/v2//x", "/v2/./x",
		"/v2/a/../b", "/v2/a/..", "/v2/a/.", "/v2/.hidden/x", "/v2/a..b/c", "/v2x", "/v3/", "/", "/token",
		"/v2%2Fx", "/v2/a%2Fb/manifests/1", "/v2/a/%2e%2e/b", "//v2/x", "/V2/", "/v2/a%25b/c", "/v2/a%20b/../c", "/v2/a%20b/c",
	} {
		for _, method := range []string{"GET", "HEAD", "CONNECT"} {
			req := httptest.NewRequest(method, "http://mirror.test"+target, nil)
			if method == "CONNECT" {
				req.RequestURI = target
			}
			a, b := httptest.NewRecorder(), httptest.NewRecorder()
			mux.ServeHTTP(a, req.Clone(req.Context()))
			fast.ServeHTTP(b, req.Clone(req.Context()))
			if a.Code != b.Code || a.Header().Get("X-Api") != b.Header().Get("X-Api") || a.Header().Get("Location") != b.Header().Get("Location") {
				t.Errorf("%s %s: mux %d %q %q, fast %d %q %q", method, target, a.Code, a.Header().Get("X-Api"), a.Header().Get("Location"),
					b.Code, b.Header().Get("X-Api"), b.Header().Get("Location"))
			}
		}
	}
}

// TestManifestHeaderCache: the cached header values are those of the
// manifest asked, whichever manifest last used its slot, from many
// goroutines at once (run with -race).
func TestManifestHeaderCache(t *testing.T) {
	var c headerCache
	var ms []*mirror.Manifest
	for i := range 3 * headerSlots {
		body := []byte(strings.Repeat("x", i))
		mt := oci.MediaTypeOCIManifest
		if i%2 == 1 {
			mt = oci.MediaTypeDockerManifest
		}
		ms = append(ms, &mirror.Manifest{Body: body, MediaType: mt, Digest: digest.FromBytes(body)})
	}
	// Two media types for the same bytes: each answer says its own.
	ms = append(ms, &mirror.Manifest{Body: ms[0].Body, MediaType: oci.MediaTypeDockerManifest, Digest: ms[0].Digest})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for round := range 3 {
				for i := range ms {
					m := ms[(i*7+g+round)%len(ms)]
					h := c.get(m)
					want := []string{m.MediaType, strconv.Itoa(len(m.Body)), m.Digest.String(), `"` + m.Digest.String() + `"`}
					got := []string{h.contentType[0], h.contentLength[0], h.digest[0], h.etag[0]}
					if !slices.Equal(got, want) {
						t.Errorf("headers of %s (%s): %q, want %q", m.Digest, m.MediaType, got, want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
