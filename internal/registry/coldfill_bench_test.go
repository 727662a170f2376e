package registry

import (
	"fmt"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkColdFillConnections: one client GETs a cold 128 MiB blob whose
// upstream is throttled per connection (16 and 50 MB/s), with the fill
// over 1, 2, 4 and 8 connections (upstreams[].fill_connections). It
// reports the client's MB/s and the upstream's bytes per blob: the
// measurement behind the default of 4 (docs/benchmarks.md).
//
//	go test -run '^$' -bench ColdFillConnections -benchtime 1x ./internal/registry/
func BenchmarkColdFillConnections(b *testing.B) {
	const size = 128 << 20
	for _, rate := range []int64{16e6, 50e6} {
		for _, n := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%dMBps-per-conn/fill_connections=%d", rate/1e6, n), func(b *testing.B) {
				for b.Loop() {
					b.StopTimer()
					e := newEnv(b, envOptions{seed: []testenv.SeedOption{testenv.WithBigImage(size)}, fillConns: n, quiet: true})
					img := *e.imgs.Big
					layer := img.Layers[0]
					e.hub.SetFault(layer.Digest.String(), testenv.Throttle(rate))
					e.do(b, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag)
					b.StartTimer()
					start := time.Now()
					r := e.do(b, "GET", "/v2/"+img.Repo+"/blobs/"+string(layer.Digest))
					took := time.Since(start)
					if r.err != nil || int64(len(r.body)) != layer.Size {
						b.Fatalf("blob: %d of %d bytes, %v", len(r.body), layer.Size, r.err)
					}
					b.ReportMetric(float64(layer.Size)/took.Seconds()/1e6, "MB/s")
					b.ReportMetric(float64(e.hub.BlobBytes(string(layer.Digest)))/float64(layer.Size), "upstream-bytes/blob")
				}
			})
		}
	}
}
