package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
)

// wrkResult is what one wrk run measured.
type wrkResult struct {
	rps      float64
	p50, p99 time.Duration
	bps      float64 // transfer, bytes per second
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTransfer = regexp.MustCompile(`Transfer/sec:\s+([0-9.]+)([KMG]?B)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkErrors   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)|Socket errors: .*`)
)

// runWrk loads url for d with conns connections on one thread, the
// method and headers given, and parses wrk's report. Any non-2xx answer
// or socket error fails the run.
func runWrk(b *testing.B, wrk string, conns int, d time.Duration, method, url string, hdr map[string]string) wrkResult {
	b.Helper()
	var lua strings.Builder
	fmt.Fprintf(&lua, "wrk.method = %q\n", method)
	for k, v := range hdr {
		fmt.Fprintf(&lua, "wrk.headers[%q] = %q\n", k, v)
	}
	script := filepath.Join(b.TempDir(), "req.lua")
	if err := os.WriteFile(script, []byte(lua.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command(wrk, "-t1", fmt.Sprintf("-c%d", conns), "-d"+d.String(), "--latency", "-s", script, url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s %s: %v\n%s", method, url, err, out)
	}
	text := string(out)
	if m := wrkErrors.FindString(text); m != "" {
		b.Fatalf("wrk %s %s: %s\n%s", method, url, m, text)
	}
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(text)
	if m == nil {
		b.Fatalf("wrk report without Requests/sec:\n%s", text)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	if m := wrkTransfer.FindStringSubmatch(text); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		r.bps = v * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[m[2]]
	}
	for _, m := range wrkPct.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		dur := time.Duration(v * float64(map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]))
		if m[1] == "50" {
			r.p50 = dur
		} else {
			r.p99 = dur
		}
	}
	if r.p50 == 0 || r.p99 == 0 {
		b.Fatalf("wrk report without 50%%/99%% latencies:\n%s", text)
	}
	return r
}

// runGo is runWrk's twin in Go, for HEAD requests (wrk waits for a body
// that a HEAD answer never has): conns keep-alive connections, each
// sending the next request when the last answer arrived.
func runGo(b *testing.B, conns int, d time.Duration, method, url string, hdr map[string]string) wrkResult {
	b.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	lat := make([][]time.Duration, conns)
	errs := make(chan error, conns)
	deadline := time.Now().Add(d)
	for i := range conns {
		go func() {
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(method, url, nil)
				for k, v := range hdr {
					req.Header.Set(k, v)
				}
				start := time.Now()
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("%s %s: %d", method, url, resp.StatusCode)
					return
				}
				lat[i] = append(lat[i], time.Since(start))
			}
			errs <- nil
		}()
	}
	for range conns {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	if len(all) == 0 {
		b.Fatalf("%s %s: no request completed", method, url)
	}
	slices.Sort(all)
	return wrkResult{rps: float64(len(all)) / d.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", d.Seconds()*1000) }

// requireBenchTool finds a tool or fails: a benchmark never passes having
// skipped what it was asked to measure.
func requireBenchTool(b *testing.B, name string) string {
	b.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s not found (apt-get install %s): this benchmark cannot run without it", name, name)
	}
	return p
}

// BenchmarkHits compares warm hits through regcache with nginx (one
// worker) serving the same bytes as static files: manifests by tag and by
// digest, GET and HEAD, with wrk -t1 -c64; and a 3 MiB blob with 16
// connections. See docs/benchmarks.md (rows 7 and 8).
func BenchmarkHits(b *testing.B) {
	wrk := requireBenchTool(b, "wrk")
	requireBenchTool(b, "nginx")
	dur := 5 * time.Second
	if v := os.Getenv("BENCH_HITS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BENCH_HITS_DURATION: %v", err)
		}
		dur = d
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	hub := testenv.NewHub(b)
	hub.SetCredentials(upstreamUser, upstreamSecret)
	hub.SetRateLimit(1_000_000, 1_000_000)
	imgs := hub.Seed(b, testenv.WithBigImage(3*mib))
	img, big := imgs.Single, imgs.Big
	bin := regcacheBinary(b)
	rc := startRegcache(b, bin, "regcache", hub, upstreamUser, upstreamSecret, "REGCACHE_FRESHNESS=10m")

	// Warm regcache, and put the same bytes in nginx's directory.
	root := b.TempDir()
	accept := strings.Join(oci.ManifestMediaTypes, ", ")
	fetch := func(path, file string) {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, rc.url+path, nil)
		req.Header.Set("Accept", accept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("warm %s: %d %v", path, resp.StatusCode, err)
		}
		if err := os.WriteFile(filepath.Join(root, file), body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tagPath := "/v2/" + img.Repo + "/manifests/" + img.Tag
	digestPath := "/v2/" + img.Repo + "/manifests/" + string(img.Digest)
	blobPath := "/v2/" + big.Repo + "/blobs/" + string(big.Layers[0].Digest)
	fetch(tagPath, "manifest")
	fetch(digestPath, "manifest")
	fetch(blobPath, "blob")
	ngx := startNginxWorkers(b, root, "1")

	hdr := map[string]string{"Accept": accept}
	type row struct {
		name, method, path, ref string
	}
	rows := []row{
		{"GET manifest by tag", "GET", tagPath, "/files/manifest"},
		{"HEAD manifest by tag", "HEAD", tagPath, "/files/manifest"},
		{"GET manifest by digest", "GET", digestPath, "/files/manifest"},
		{"HEAD manifest by digest", "HEAD", digestPath, "/files/manifest"},
	}
	refs := map[string]wrkResult{}
	var table strings.Builder
	fmt.Fprintf(&table, "\nregcache hits, %s, %s, wrk -t1, %s per run\nregcache %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpuModel(), dur, revision(bin))
	table.WriteString("HEAD rows are loaded by a Go client in the benchmark process (wrk cannot send HEADs), the others by wrk.\n\n")
	table.WriteString("| # | request | regcache req/s | p50 | p99 | nginx (1 worker) req/s | p50 | p99 | req/s ratio | p99 ratio | target | |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	load := func(method, url string) wrkResult {
		if method == http.MethodHead {
			return runGo(b, 64, dur, method, url, hdr)
		}
		return runWrk(b, wrk, 64, dur, method, url, hdr)
	}
	for _, r := range rows {
		ref, ok := refs[r.method]
		if !ok {
			ref = load(r.method, ngx.url+r.ref)
			refs[r.method] = ref
			logf("row 7: nginx %s %.0f req/s, p50 %v, p99 %v", r.method, ref.rps, ref.p50, ref.p99)
		}
		got := load(r.method, rc.url+r.path)
		logf("row 7: regcache %s %.0f req/s, p50 %v, p99 %v", r.name, got.rps, got.p50, got.p99)
		rr, pr := got.rps/ref.rps, got.p99.Seconds()/ref.p99.Seconds()
		met := "met"
		if rr < 0.5 || pr > 2 {
			met = "**missed**"
		}
		fmt.Fprintf(&table, "| 7 | %s, 64 conns | %.0f | %v | %v | %.0f | %v | %v | %.2f | %.2f | ≥ 0.5, ≤ 2 | %s |\n",
			r.name, got.rps, ms(got.p50), ms(got.p99), ref.rps, ms(ref.p50), ms(ref.p99), rr, pr, met)
	}
	// The floor of any Go server here: net/http writing the same bytes
	// from memory with the same headers, nothing else, in a process of its
	// own as regcache and nginx are (in this process it would share the
	// HEAD rows' load generator's runtime).
	bare := startBare(b, filepath.Join(root, "manifest"), img.MediaType, string(img.Digest), root)
	for _, method := range []string{"GET", "HEAD"} {
		ref := refs[method]
		got := load(method, bare+"/")
		logf("row 7: bare net/http %s %.0f req/s, p50 %v, p99 %v", method, got.rps, got.p50, got.p99)
		fmt.Fprintf(&table, "| 7 | reference: bare Go net/http %s of the same bytes, 64 conns | %.0f | %s | %s | %.0f | %s | %s | %.2f | %.2f | | not a target |\n",
			method, got.rps, ms(got.p50), ms(got.p99), ref.rps, ms(ref.p50), ms(ref.p99), got.rps/ref.rps, got.p99.Seconds()/ref.p99.Seconds())
	}
	ngxBlob := runWrk(b, wrk, 16, dur, "GET", ngx.url+"/files/blob", nil)
	rcBlob := runWrk(b, wrk, 16, dur, "GET", rc.url+blobPath, nil)
	// The floor of a Go server sending a file: net/http's file server
	// (sendfile) on the same file, in the same process of its own.
	bareBlob := runWrk(b, wrk, 16, dur, "GET", bare+"/files/blob", nil)
	logf("row 8: bare net/http file server %.2f GB/s", bareBlob.bps/1e9)
	logf("row 8: 3 MiB blob: regcache %.2f GB/s, nginx %.2f GB/s", rcBlob.bps/1e9, ngxBlob.bps/1e9)
	met := "met"
	if rcBlob.bps < ngxBlob.bps {
		met = "**missed**"
	}
	fmt.Fprintf(&table, "| 8 | GET 3 MiB blob, 16 conns (GB/s) | %.2f | %v | %v | %.2f | %v | %v | %.2f | %.2f | ≥ 1.0 | %s |\n",
		rcBlob.bps/1e9, ms(rcBlob.p50), ms(rcBlob.p99), ngxBlob.bps/1e9, ms(ngxBlob.p50), ms(ngxBlob.p99), rcBlob.bps/ngxBlob.bps, rcBlob.p99.Seconds()/ngxBlob.p99.Seconds(), met)
	fmt.Fprintf(&table, "| 8 | reference: bare Go net/http file server, same file (GB/s) | %.2f | %s | %s | %.2f | %s | %s | %.2f | %.2f | | not a target |\n",
		bareBlob.bps/1e9, ms(bareBlob.p50), ms(bareBlob.p99), ngxBlob.bps/1e9, ms(ngxBlob.p50), ms(ngxBlob.p99), bareBlob.bps/ngxBlob.bps, bareBlob.p99.Seconds()/ngxBlob.p99.Seconds())
	fmt.Print(table.String())
	if p := os.Getenv("BENCH_TABLE"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(table.String())
			f.Close()
		}
	}
	b.ReportMetric(refs["GET"].rps, "nginx-req/s")
}

// startBare builds and starts bench/bare (the Go floor of rows 7 and 8)
// serving manifest at / and dir under /files/, and returns its base URL. It
// exits when the benchmark closes its standard input.
func startBare(b *testing.B, manifest, mediaType, dgst, dir string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "bare")
	if out, err := exec.Command("go", "build", "-o", bin, "./bare").CombinedOutput(); err != nil {
		b.Fatalf("build bench/bare: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-manifest", manifest, "-type", mediaType, "-digest", dgst, "-dir", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("bench/bare did not say its address: %v", err)
	}
	return "http://" + strings.TrimSpace(addr)
}
