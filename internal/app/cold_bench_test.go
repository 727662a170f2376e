package app

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"

	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkColdBlob pulls one cold blob (1 GiB by default; BENCH_COLD_MIB
// sets the size) through a fresh mirror per iteration, from the Docker Hub
// stand-in (token auth, CDN redirect), the client hashing every byte as a
// real one does. For a profile of the cold path:
//
//	go test -run '^$' -bench BenchmarkColdBlob -benchtime 3x -cpuprofile /tmp/cold.cpu -memprofile /tmp/cold.mem ./internal/app
//
// The stand-in and the client run in the same process, so read the
// profile by regcache's own functions (fill, mirror, registry, disk).
func BenchmarkColdBlob(b *testing.B) {
	size := int64(1 << 30)
	if v, err := strconv.Atoi(os.Getenv("BENCH_COLD_MIB")); err == nil && v > 0 {
		size = int64(v) << 20
	}
	hub := testenv.NewHub(b)
	imgs := hub.Seed(b, testenv.WithBigImage(size))
	hub.SetRateLimit(1<<30, 1<<30)
	layer := imgs.Big.Layers[0]
	b.SetBytes(layer.Size)
	b.ReportAllocs()
	buf := make([]byte, 256<<10)
	for b.Loop() {
		b.StopTimer()
		m := startMirrorB(b, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
			"REGCACHE_LOG_LEVEL": "warn"})
		url := "http://" + m.Host + "/v2/" + imgs.Big.Repo + "/blobs/" + string(layer.Digest)
		b.StartTimer()
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.New()
		n, err := io.CopyBuffer(h, resp.Body, buf)
		resp.Body.Close()
		if err != nil || n != layer.Size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != string(layer.Digest) {
			b.Fatalf("cold blob: %d of %d bytes, %v", n, layer.Size, err)
		}

	}
}
