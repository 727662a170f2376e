package app

import (
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkAppManifestHit loads warm manifest hits on the whole app (access
// middleware, metrics, log level warn) with wrk, for a server-only profile:
//
//	go test -run '^$' -bench BenchmarkAppManifestHit -benchtime 1x -cpuprofile /tmp/cpu.out ./internal/app
func BenchmarkAppManifestHit(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not found (apt-get install wrk)")
	}
	hub := testenv.NewHub(b)
	imgs := hub.Seed(b)
	m := startMirrorB(b, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_FRESHNESS": "10m"})
	img := imgs.Single
	url := "http://" + m.Host + "/v2/" + img.Repo + "/manifests/" + img.Tag
	accept := "Accept: " + strings.Join(oci.ManifestMediaTypes, ", ")
	if out, err := exec.Command("curl", "-sf", "-o", "/dev/null", "-H", accept, url).CombinedOutput(); err != nil {
		b.Fatalf("warm-up: %v %s", err, out)
	}
	b.ResetTimer()
	out, err := exec.Command(wrk, "-t1", "-c64", "-d5s", "--latency", "-H", accept, url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	b.Log(string(out))
}

// handlerWriter keeps nothing and takes a body by ReadFrom as net/http's
// writer does, without reading the file (sendfile's work is not the
// handler's).
type handlerWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *handlerWriter) Header() http.Header         { return w.h }
func (w *handlerWriter) WriteHeader(c int)           { w.status = c }
func (w *handlerWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *handlerWriter) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		n := lr.N
		lr.N = 0
		return n, nil
	}
	return io.Copy(io.Discard, r)
}

// BenchmarkAppHitHandler calls the whole app's handler (access
// middleware, routing, metrics, the observer, the log at warn) for warm
// hits, with no network and no net/http server, beside a bare handler
// writing the same manifest bytes: what regcache does per hit that the
// bare handler does not, in allocations (-benchmem; both count the
// benchmark's own request building, about ten) and in a CPU profile
// (docs/benchmarks.md, issue 28):
//
//	go test -run '^$' -bench BenchmarkAppHitHandler -benchtime 20000x -benchmem ./internal/app
func BenchmarkAppHitHandler(b *testing.B) {
	hub := testenv.NewHub(b)
	imgs := hub.Seed(b)
	m := startMirrorB(b, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_FRESHNESS": "30m", "REGCACHE_LOG_LEVEL": "warn"})
	img := imgs.Single
	accept := strings.Join(oci.ManifestMediaTypes, ", ")
	h := m.App.Handler()
	var body []byte
	for _, ref := range []string{img.Tag, string(img.Digest)} {
		req, _ := http.NewRequest("GET", "http://"+m.Host+"/v2/"+img.Repo+"/manifests/"+ref, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	layer := imgs.Single.Layers[0]
	blobPath := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
	for range 2 { // a miss, then (once its fill committed) a hit
		resp, err := http.Get("http://" + m.Host + blobPath)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		time.Sleep(time.Second)
	}
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", img.MediaType)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Docker-Content-Digest", string(img.Digest))
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
	for _, c := range []struct {
		name, method, ref string
		h                 http.Handler
	}{
		{"GET tag", "GET", img.Tag, h}, {"HEAD tag", "HEAD", img.Tag, h},
		{"GET digest", "GET", string(img.Digest), h}, {"HEAD digest", "HEAD", string(img.Digest), h},
		{"blob GET", "GET", "BLOB", h}, {"blob HEAD", "HEAD", "BLOB", h},
		{"bare GET", "GET", "x", bare}, {"bare HEAD", "HEAD", "x", bare},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				u := "http://" + m.Host + "/v2/" + img.Repo + "/manifests/" + c.ref
				if c.ref == "BLOB" {
					u = "http://" + m.Host + blobPath
				}
				req, _ := http.NewRequest(c.method, u, nil)
				req.Header.Set("Accept", accept)
				req.RemoteAddr = "127.0.0.1:40000"
				req.RequestURI = req.URL.RequestURI()
				w := &handlerWriter{h: http.Header{}}
				c.h.ServeHTTP(w, req)
				if w.status != 0 && w.status != 200 {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}
