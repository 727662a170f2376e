package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkCluster measures, in one run on this machine: warm blob
// throughput of 1, 2 and 3 replicas sharing S3 (versitygw) and Redis, with
// clients spread over them, beside a single-node regcache (disk + bbolt);
// and a cold burst of 32 clients for one blob across the 3 replicas beside
// the same burst on the single node. Run it with
//
//	go test -run '^$' -bench '^BenchmarkCluster$' -benchtime 1x -timeout 30m ./bench/
//
// BENCH_CLUSTER_BLOB (MiB, default 32) sizes the cold blob,
// BENCH_CLUSTER_DURATION (default 10s) each warm load run.
func BenchmarkCluster(b *testing.B) {
	blobMiB := envInt("BENCH_CLUSTER_BLOB", 32)
	dur := 10 * time.Second
	if v := os.Getenv("BENCH_CLUSTER_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BENCH_CLUSTER_DURATION: %v", err)
		}
		dur = d
	}
	hub := testenv.NewHub(b)
	hub.SetCredentials(upstreamUser, upstreamSecret)
	hub.SetRateLimit(1_000_000, 1_000_000)
	warmImgs := hub.Seed(b, testenv.WithPrefix("warm/"), testenv.WithSeed(3), testenv.WithBigImage(1<<20))
	coldSingle := hub.Seed(b, testenv.WithPrefix("cold1/"), testenv.WithSeed(4), testenv.WithBigImage(int64(blobMiB)<<20))
	coldCluster := hub.Seed(b, testenv.WithPrefix("cold3/"), testenv.WithSeed(5), testenv.WithBigImage(int64(blobMiB)<<20))
	bin := regcacheBinary(b)
	s3srv, rd := testenv.NewS3(b), testenv.NewRedis(b)

	single := startRegcache(b, bin, "single", hub, upstreamUser, upstreamSecret, "REGCACHE_PREFETCH=false")
	var replicas []*proc
	for i := range 3 {
		replicas = append(replicas, startReplica(b, bin, fmt.Sprintf("replica%d", i), hub, s3srv, rd))
	}
	time.Sleep(2 * time.Second) // a heartbeat round: every replica sees the others

	warm := warmImgs.Big
	layer := warm.Layers[0]
	path := "/v2/" + warm.Repo + "/blobs/" + layer.Digest.String()
	for _, p := range append([]*proc{single}, replicas...) { // warm every node
		if err := fetchCheck(b.Context(), p.url+path, layer.Digest); err != nil {
			b.Fatal(err)
		}
	}
	type row struct {
		name     string
		rps, mbs float64
	}
	var rows []row
	urls := func(ps []*proc) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.url+path)
		}
		return out
	}
	rps, mbs := loadSpread(b, urls([]*proc{single}), 16, dur)
	rows = append(rows, row{"single node (disk + bbolt)", rps, mbs})
	for n := 1; n <= 3; n++ {
		rps, mbs := loadSpread(b, urls(replicas[:n]), 16, dur)
		rows = append(rows, row{fmt.Sprintf("%d replica(s), S3 + Redis", n), rps, mbs})
	}

	burstOne := func(ps []*proc, img *testenv.Image) (time.Duration, int, float64) {
		l := img.Layers[0]
		hub.ResetCounters()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for i := range 32 {
			wg.Go(func() {
				errs <- fetchCheck(b.Context(), ps[i%len(ps)].url+"/v2/"+img.Repo+"/blobs/"+l.Digest.String(), l.Digest)
			})
		}
		wg.Wait()
		took := time.Since(start)
		close(errs)
		for err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		// Counted: blob GETs the upstream answered (200, or a redirect to
		// its CDN); a 401 token challenge carries no bytes and is left out.
		gets := 0
		for _, r := range hub.Requests() {
			if r.Kind == testenv.KindBlob && r.Method == http.MethodGet && r.Ref == l.Digest.String() && r.Status != http.StatusUnauthorized {
				gets++
			}
		}
		return took, gets, float64(hub.BlobBytes(l.Digest.String())) / float64(l.Size)
	}
	t1, g1, r1 := burstOne([]*proc{single}, coldSingle.Big)
	t3, g3, r3 := burstOne(replicas, coldCluster.Big)

	fmt.Printf("\n| warm blob hits (1 MiB, 16 connections, %s) | requests/s | MiB/s |\n|---|---|---|\n", dur)
	for _, r := range rows {
		fmt.Printf("| %s | %.0f | %.0f |\n", r.name, r.rps, r.mbs)
	}
	fmt.Printf("\n| cold burst: 32 clients, one %d MiB blob | time to the last body | upstream GETs | upstream bytes / blob |\n|---|---|---|---|\n", blobMiB)
	fmt.Printf("| single node | %s | %d | %.3f |\n", t1.Round(time.Millisecond), g1, r1)
	fmt.Printf("| 3 replicas (clients spread) | %s | %d | %.3f |\n", t3.Round(time.Millisecond), g3, r3)
	b.ReportMetric(rows[0].rps, "single-rps")
	b.ReportMetric(rows[3].rps, "3replicas-rps")
	b.ReportMetric(t3.Seconds()/t1.Seconds(), "cold3/cold1")
}

func envInt(name string, def int) int {
	var n int
	if _, err := fmt.Sscan(os.Getenv(name), &n); err != nil || n <= 0 {
		return def
	}
	return n
}

// startReplica runs `regcache serve` as a replica of the cluster on s3srv
// and rd, with a 1 GiB local tier.
func startReplica(b *testing.B, bin, name string, hub *testenv.Hub, s3srv *testenv.S3, rd *testenv.Redis) *proc {
	b.Helper()
	dir := b.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(cleanEnv(),
		"REGCACHE_ADDR="+addr, "REGCACHE_ADMIN_ADDR="+admin, "REGCACHE_DATA="+filepath.Join(dir, "data"),
		"REGCACHE_UPSTREAM_URL="+hub.URL, "REGCACHE_UPSTREAM_NAME=docker.io",
		"REGCACHE_USERNAME="+upstreamUser, "REGCACHE_PASSWORD="+upstreamSecret,
		"REGCACHE_LOG_LEVEL=warn", "REGCACHE_PREFETCH=false", "REGCACHE_LOCAL_CACHE_SIZE=1GiB",
		"REGCACHE_S3_ENDPOINT="+s3srv.Endpoint, "REGCACHE_S3_BUCKET="+s3srv.Bucket, "REGCACHE_S3_REGION="+s3srv.Region,
		"REGCACHE_S3_ACCESS_KEY="+s3srv.AccessKey, "REGCACHE_S3_SECRET_KEY="+s3srv.SecretKey, "REGCACHE_S3_PATH_STYLE=true",
		"REGCACHE_CLUSTER_REDIS="+rd.URL, "REGCACHE_CLUSTER_ADVERTISE=http://"+addr, "REGCACHE_CLUSTER_SECRET=bench-cluster-secret-0123456789")
	p := startProc(b, name, cmd, dir, "http://"+admin+"/readyz")
	p.url = "http://" + addr
	testenv.WaitHTTP(b, p.url+"/v2/", 10*time.Second)
	return p
}

// fetchCheck GETs url and checks the body hashes to d.
func fetchCheck(ctx context.Context, url string, d digest.Digest) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 || digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)) != d {
		return fmt.Errorf("GET %s: status %d, or wrong bytes", url, resp.StatusCode)
	}
	return nil
}

// loadSpread keeps conns connections busy for d, each GETting the urls in
// turn (clients spread over replicas), and returns requests/s and MiB/s.
func loadSpread(b *testing.B, urls []string, conns int, d time.Duration) (float64, float64) {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var reqs, bytes atomic.Int64
	deadline := time.Now().Add(d)
	errs := make(chan error, conns)
	for i := range conns {
		go func() {
			for j := i; time.Now().Before(deadline); j++ {
				resp, err := hc.Get(urls[j%len(urls)])
				if err != nil {
					errs <- err
					return
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("GET %s: %d", urls[j%len(urls)], resp.StatusCode)
					return
				}
				reqs.Add(1)
				bytes.Add(n)
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return float64(reqs.Load()) / d.Seconds(), float64(bytes.Load()) / d.Seconds() / (1 << 20)
}
