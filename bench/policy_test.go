package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkPolicy measures what the pull policy costs (docs/benchmarks.md,
// row 10): warm manifest hits of a verified image with a verify policy
// against the same mirror build without one (wrk -t1 -c64, the two runs
// interleaved twice; target ≥ 0.95), and the latency a cold verification
// adds to the first pull of a signed image (the tag scheme's manifest and
// payload fetched from the upstream, then the ECDSA check), over
// coldImages images, each pulled cold from both mirrors.
func BenchmarkPolicy(b *testing.B) {
	wrk := requireBenchTool(b, "wrk")
	dur := 5 * time.Second
	if v := os.Getenv("BENCH_HITS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("BENCH_HITS_DURATION: %v", err)
		}
		dur = d
	}
	const coldImages = 20
	hub := testenv.NewHub(b)
	hub.SetCredentials(upstreamUser, upstreamSecret)
	hub.SetRateLimit(1_000_000, 1_000_000)
	key := testenv.NewCosignKey(b)
	var imgs []testenv.Image
	for i := range coldImages + 1 {
		img := hub.Seed(b, testenv.WithPrefix(fmt.Sprintf("p%d/", i)), testenv.WithSeed(uint64(100+i))).Single
		key.Sign(b, hub.AdminHost, img.Repo, img.Digest)
		imgs = append(imgs, img)
	}
	policyFile := filepath.Join(b.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte("default: verify\nverify:\n  any_of:\n    - cosign: {key: "+key.Pub+"}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := regcacheBinary(b)
	off := startRegcache(b, bin, "policy-off", hub, upstreamUser, upstreamSecret, "REGCACHE_FRESHNESS=10m", "REGCACHE_PREFETCH=false")
	on := startRegcache(b, bin, "policy-on", hub, upstreamUser, upstreamSecret, "REGCACHE_FRESHNESS=10m", "REGCACHE_PREFETCH=false", "REGCACHE_POLICY_FILE="+policyFile)
	accept := strings.Join(oci.ManifestMediaTypes, ", ")
	get := func(base string, img testenv.Image) time.Duration {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, base+"/v2/"+img.Repo+"/manifests/"+img.Tag, nil)
		req.Header.Set("Accept", accept)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("GET %s: %d %s", img.Repo, resp.StatusCode, body)
		}
		return time.Since(start)
	}
	// Cold: each image's first pull from each mirror, the order alternated.
	var coldOff, coldOn []time.Duration
	for i, img := range imgs[1:] {
		if i%2 == 0 {
			coldOff, coldOn = append(coldOff, get(off.url, img)), append(coldOn, get(on.url, img))
		} else {
			coldOn, coldOff = append(coldOn, get(on.url, img)), append(coldOff, get(off.url, img))
		}
	}
	slices.Sort(coldOff)
	slices.Sort(coldOn)
	med := func(d []time.Duration) time.Duration { return d[len(d)/2] }
	p90 := func(d []time.Duration) time.Duration { return d[len(d)*9/10] }

	// Warm: the same verified image, loaded on each mirror in turn.
	img := imgs[0]
	get(off.url, img)
	get(on.url, img)
	path := "/v2/" + img.Repo + "/manifests/" + img.Tag
	hdr := map[string]string{"Accept": accept}
	var rpsOff, rpsOn float64
	var resOn wrkResult
	for range 2 {
		rpsOff += runWrk(b, wrk, 64, dur, "GET", off.url+path, hdr).rps / 2
		resOn = runWrk(b, wrk, 64, dur, "GET", on.url+path, hdr)
		rpsOn += resOn.rps / 2
	}
	ratio := rpsOn / rpsOff
	met := "met"
	if ratio < 0.95 {
		met = "**missed**"
	}
	var table strings.Builder
	fmt.Fprintf(&table, "\npull policy, %s, %s, wrk -t1 -c64, %s per run, two runs each interleaved\nregcache %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpuModel(), dur, revision(bin))
	table.WriteString("| # | measure | policy off | policy on (verify, cosign key) | ratio / added | target | |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&table, "| 9 | warm GET manifest by tag of a verified image, req/s | %.0f | %.0f | %.3f | ≥ 0.95 | %s |\n", rpsOff, rpsOn, ratio, met)
	fmt.Fprintf(&table, "| 9 | cold GET manifest by tag (first pull), median over %d images | %s | %s | +%s | measured | |\n", coldImages, ms(med(coldOff)), ms(med(coldOn)), ms(med(coldOn)-med(coldOff)))
	fmt.Fprintf(&table, "| 9 | cold GET manifest by tag (first pull), p90 | %s | %s | +%s | measured | |\n", ms(p90(coldOff)), ms(p90(coldOn)), ms(p90(coldOn)-p90(coldOff)))
	fmt.Print(table.String())
	if p := os.Getenv("BENCH_TABLE"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, _ = f.WriteString(table.String())
			f.Close()
		}
	}
	b.ReportMetric(ratio, "on/off")
}
