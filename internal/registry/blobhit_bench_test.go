package registry

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkBlobHit measures warm blob hits in process (GET, HEAD and a
// range of a stored layer), the path fill.Reader.Send serves by sendfile:
//
//	go test -run '^$' -bench BenchmarkBlobHit ./internal/registry
func BenchmarkBlobHit(b *testing.B) {
	e := newEnv(b, envOptions{freshness: time.Hour, quiet: true})
	img := e.imgs.Single
	layer := img.Layers[0]
	path := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
	if r := e.do(b, "GET", path); r.status != 200 {
		b.Fatalf("warm-up: %d", r.status)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := e.store.Stat(b.Context(), layer.Digest); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the layer was not committed")
		}
	}
	for _, c := range []struct{ name, method, rng string }{
		{"GET", "GET", ""}, {"HEAD", "HEAD", ""}, {"GET range", "GET", "bytes=100-1099"},
	} {
		b.Run(c.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(c.method, e.ts.URL+path, nil)
					if c.rng != "" {
						req.Header.Set("Range", c.rng)
					}
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 != 2 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
