package app

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

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
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		m := startMirrorB(b, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
			"REGCACHE_LOG_LEVEL": "warn"})
		url := "http://" + m.Host + "/v2/" + imgs.Big.Repo + "/blobs/" + string(layer.Digest)
		recyclePageCache(b, size+size/2)
		cpu0 := processCPU()
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
		b.StopTimer()
		cpu += processCPU() - cpu0
		b.StartTimer()
	}
	// The whole process's CPU (mirror, stand-in and client): on a shared
	// machine it moves less than the wall clock.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// recyclePageCache writes size bytes into a temporary file and deletes it:
// the next fill finds just-freed page-cache memory. On a VM that backs
// guest memory on first touch and takes freed memory back (this machine),
// fresh memory costs the writer 2-3 s of CPU per GiB and recycled memory
// 0.2 s, so without it each iteration measures the hypervisor (see
// docs/benchmarks.md, row 3).
func recyclePageCache(b *testing.B, size int64) {
	b.Helper()
	f, err := os.CreateTemp(b.TempDir(), "recycle-*")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for n := int64(0); n < size; n += int64(len(chunk)) {
		if _, err := f.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
