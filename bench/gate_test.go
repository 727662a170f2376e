package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkGate is the benchmark .ci/run runs on every change (about a
// minute): it fails only on regressions noise cannot cause, and prints its
// table in the CI log.
//
//   - one cold blob asked by 16 clients at once is fetched from the
//     upstream once (single flight);
//
//   - a tag pulled twice within the freshness window costs one upstream
//     manifest GET;
//
//   - a warm blob is served at least half as fast as Go's own file server
//     serves the same bytes, in the same run (losing sendfile, or a copy
//     through a small buffer, falls far below);
//
//   - the mirror's peak RSS stays under 150 MiB.
//
//     go test -run '^$' -bench '^BenchmarkGate$' -benchtime 1x ./bench/
func BenchmarkGate(b *testing.B) {
	const (
		burstClients = 16
		burstSize    = 32 << 20
		warmSize     = 64 << 20
		warmRounds   = 5
		minWarm      = 0.5
		maxRSS       = 150 << 20
	)
	ctx := b.Context()
	hub := testenv.NewHub(b)
	hub.SetCredentials(upstreamUser, upstreamSecret)
	hub.SetRateLimit(1_000_000, 1_000_000)
	imgs := hub.Seed(b, testenv.WithBigImage(warmSize))
	burstImgs := hub.Seed(b, testenv.WithPrefix("burst/"), testenv.WithSeed(3), testenv.WithBigImage(burstSize))
	rc := startRegcache(b, regcacheBinary(b), "regcache", hub, upstreamUser, upstreamSecret, "REGCACHE_PREFETCH=false")
	c := newClient(rc.url, "", "")
	defer c.close()
	var rows []string
	row := func(check, got, limit string, ok bool) {
		verdict := "ok"
		if !ok {
			verdict = "FAIL"
			b.Errorf("gate: %s: %s (limit %s)", check, got, limit)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s | %s | %s |", check, got, limit, verdict))
	}

	// Single flight.
	layer := burstImgs.Big.Layers[0]
	hub.ResetCounters()
	if _, err := c.burst(ctx, burstClients, burstImgs.Big.Repo, string(layer.Digest), layer.Size); err != nil {
		b.Fatal(err)
	}
	fetched := float64(hub.BlobBytes(string(layer.Digest))) / float64(layer.Size)
	row(fmt.Sprintf("cold burst: %d clients, one %d MiB blob: upstream bytes / blob", burstClients, burstSize>>20),
		fmt.Sprintf("%.3f", fetched), "≤ 1.01", fetched <= 1.01)

	// Freshness.
	big := imgs.Big
	accept := "application/vnd.docker.distribution.manifest.v2+json,application/vnd.oci.image.manifest.v1+json"
	hub.ResetCounters()
	for range 2 {
		if _, _, err := c.manifest(ctx, big.Repo, big.Tag, accept); err != nil {
			b.Fatal(err)
		}
	}
	gets := 0
	for _, q := range hub.Requests() {
		if q.Kind == testenv.KindManifest && q.Method == http.MethodGet && q.Auth {
			gets++
		}
	}
	row("a tag pulled twice within the freshness window: upstream manifest GETs", fmt.Sprint(gets), "1", gets == 1)

	// Warm blob, against Go's file server serving the same bytes.
	warm := big.Layers[0]
	if err := c.blob(ctx, big.Repo, string(warm.Digest), warm.Size); err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), "blob")
	if err := download(rc.url+"/v2/"+big.Repo+"/blobs/"+string(warm.Digest), file); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	fs := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(file))), ReadHeaderTimeout: 10 * time.Second}
	go fs.Serve(ln)
	defer fs.Close()
	goClient := newClient("http://"+ln.Addr().String(), "", "")
	defer goClient.close()
	timeIt := func(fn func() error) time.Duration {
		best := time.Duration(1<<63 - 1)
		for range warmRounds {
			start := time.Now()
			if err := fn(); err != nil {
				b.Fatal(err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	// Timed without hashing (the first GET above checked the bytes): a
	// client's sha256 at about 1 GB/s would hide the servers' difference.
	drain := func(cl *client, repo, path string) func() error {
		return func() error {
			resp, err := cl.get(ctx, http.MethodGet, repo, path, nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n != warm.Size {
				err = fmt.Errorf("GET %s: %d bytes of %d", path, n, warm.Size)
			}
			return err
		}
	}
	viaGo := timeIt(drain(goClient, "", "/blob"))
	viaRC := timeIt(drain(c, big.Repo, "/v2/"+big.Repo+"/blobs/"+string(warm.Digest)))
	r := viaGo.Seconds() / viaRC.Seconds()
	mbps := func(d time.Duration) float64 { return float64(warm.Size) / d.Seconds() / 1e6 }
	row(fmt.Sprintf("warm %d MiB blob, one client (best of %d): regcache %.0f MB/s, Go file server %.0f MB/s", warmSize>>20, warmRounds, mbps(viaRC), mbps(viaGo)),
		fmt.Sprintf("%.2f × Go", r), fmt.Sprintf("≥ %.1f × Go", minWarm), r >= minWarm)

	// Memory.
	peak, err := peakRSS(rc.pid)
	if err != nil {
		b.Fatal(err)
	}
	row("the mirror's peak RSS (VmHWM) over the run", fmt.Sprintf("%.0f MiB", float64(peak)/(1<<20)), "≤ 150 MiB", peak <= maxRSS)

	fmt.Fprintf(os.Stderr, "\nbenchmark gate (%s)\n\n| check | measured | limit | |\n|---|---|---|---|\n%s\n\n", time.Now().UTC().Format(time.RFC3339), strings.Join(rows, "\n"))
}

// download streams url's body into the file at path.
func download(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
