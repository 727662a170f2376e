package registry

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/oci"
)

// BenchmarkManifestHit measures warm manifest hits in process, for
// profiling the hit path (see docs/benchmarks.md):
//
//	go test -run '^$' -bench BenchmarkManifestHit -benchtime 20000x -cpuprofile /tmp/cpu.out ./internal/registry
func BenchmarkManifestHit(b *testing.B) {
	e := newEnv(b, envOptions{freshness: time.Hour, quiet: true})
	img := e.imgs.Single
	for _, ref := range []string{img.Tag, string(img.Digest)} {
		if r := e.do(b, "GET", "/v2/"+img.Repo+"/manifests/"+ref); r.status != 200 {
			b.Fatalf("warm-up: %d", r.status)
		}
	}
	for _, c := range []struct{ name, method, ref string }{
		{"GET tag", "GET", img.Tag}, {"HEAD tag", "HEAD", img.Tag},
		{"GET digest", "GET", string(img.Digest)}, {"HEAD digest", "HEAD", string(img.Digest)},
	} {
		b.Run(c.name, func(b *testing.B) {
			url := e.ts.URL + "/v2/" + img.Repo + "/manifests/" + c.ref
			accept := strings.Join(oci.ManifestMediaTypes, ", ")
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			hc := &http.Client{Transport: tr}
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(c.method, url, nil)
					req.Header.Set("Accept", accept)
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkManifestHitWrk loads warm manifest hits with wrk (an external
// process, so a -cpuprofile shows the server alone):
//
//	go test -run '^$' -bench BenchmarkManifestHitWrk -benchtime 1x -cpuprofile /tmp/cpu.out ./internal/registry
func BenchmarkManifestHitWrk(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not found (apt-get install wrk)")
	}
	e := newEnv(b, envOptions{freshness: time.Hour, quiet: true})
	img := e.imgs.Single
	path := "/v2/" + img.Repo + "/manifests/" + img.Tag
	if r := e.do(b, "GET", path); r.status != 200 {
		b.Fatalf("warm-up: %d", r.status)
	}
	b.ResetTimer()
	out, err := exec.Command(wrk, "-t1", "-c64", "-d5s", "--latency", "-H", "Accept: "+strings.Join(oci.ManifestMediaTypes, ", "), e.ts.URL+path).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	b.Log(string(out))
}
