// Package bench compares regcache with Debian's docker-registry
// (Distribution 2.8) in proxy mode and with nginx, side by side on one
// machine, in front of the same Docker-Hub-like test upstream. Run it with
// bench/compare.sh; docs/benchmarks.md explains each row.
package bench

import (
	"debug/buildinfo"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

const (
	mib = 1 << 20
	gib = 1 << 30

	bigSize      = 1 * gib   // rows 1, 3, 4
	burstSize    = 256 * mib // row 2
	tenLayerSize = 500 * mib // row 5

	burstClients   = 32
	warmClients    = 64
	warmRepeats    = 5
	layerParallel  = 3    // dockerd's max-concurrent-downloads
	throttleBPS    = 50e6 // per upstream connection, like a CDN edge
	economyPulls   = 100
	upstreamUser   = "bench" // the mirrors' account at the test upstream
	upstreamSecret = "bench-secret"
)

// scale shrinks every content size by $BENCH_SCALE (default 1) for quick
// runs while developing; client counts and the throttle stay the same.
func scale(b *testing.B) float64 {
	s := os.Getenv("BENCH_SCALE")
	if s == "" {
		return 1
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 1 {
		b.Fatalf("BENCH_SCALE=%q: want a number in (0, 1]", s)
	}
	return f
}

func scaled(size int64, f float64) int64 { return max(int64(float64(size)*f), 1<<20) }

// mirror is one system under test.
type mirror struct {
	name string
	url  string
	pid  int
}

// rss tracks a process's peak resident memory per phase. Writing 5 to
// /proc/<pid>/clear_refs resets VmHWM, so each phase gets its own peak.
type rss struct {
	pid      int
	resetOK  bool
	whole    int64
	byPhase  map[string]int64
	failures []string
}

func newRSS(pid int) *rss { return &rss{pid: pid, byPhase: map[string]int64{}} }

// end records the peak since the last end (or start) as phase's and resets it.
func (r *rss) end(phase string) {
	v, err := peakRSS(r.pid)
	if err != nil {
		r.failures = append(r.failures, err.Error())
		return
	}
	r.byPhase[phase] = v
	r.whole = max(r.whole, v)
	err = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", r.pid), []byte("5"), 0)
	r.resetOK = err == nil
}

// results are the numbers of one run.
type results struct {
	warmMBps        map[string]float64 // mirror or "nginx" → median MB/s
	burstUpBytes    map[string]float64 // upstream bytes / blob size, cold burst
	burstUpGETs     map[string]int
	burstCold       map[string]time.Duration
	burstWarm       map[string]time.Duration
	burstWarmUp     map[string]float64 // upstream bytes / blob size during the warm burst (should be 0)
	coldPull        map[string]time.Duration
	coldPullUpBytes map[string]float64
	coldLastByte    map[string]time.Duration // wait between the next-to-last and the last byte
	coldPullCPU     map[string]time.Duration // the mirror process's CPU time during its cold pull
	recycle         []time.Duration          // each recyclePageCache before a row-3 pull
	direct          []time.Duration
	warm64          map[string]time.Duration
	rssOne          map[string]int64
	rss64           map[string]int64
	rssWhole        map[string]int64
	tenLayer        map[string]time.Duration
	economy         map[string][4]int // manifest GETs, manifest HEADs, token requests, 401 challenges
}

func BenchmarkCompare(b *testing.B) {
	testenv.RequireTool(b, "docker-registry")
	testenv.RequireTool(b, "nginx")
	f := scale(b)
	big, burst, ten := scaled(bigSize, f), scaled(burstSize, f), scaled(tenLayerSize, f)
	ctx := b.Context()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	started := time.Now()

	// The upstream: token auth, CDN redirects, an account for the mirrors,
	// and a rate limit high enough not to interfere.
	hub := testenv.NewHub(b)
	hub.SetCredentials(upstreamUser, upstreamSecret)
	hub.SetRateLimit(1_000_000, 1_000_000)
	logf("seeding %d MiB + %d MiB + %d MiB of layers", big>>20, burst>>20, ten>>20)
	imgs := hub.Seed(b, testenv.WithBigImage(big), testenv.WithTenLayerImage(ten))
	burstImgs := hub.Seed(b, testenv.WithPrefix("burst/"), testenv.WithSeed(2), testenv.WithBigImage(burst))
	bigImg, tenImg, burstImg := imgs.Big, imgs.TenLayer, burstImgs.Big
	bigLayer, burstLayer := bigImg.Layers[0], burstImg.Layers[0]

	bin := regcacheBinary(b)
	rc := startRegcache(b, bin, "regcache", hub, upstreamUser, upstreamSecret)
	dist := testenv.NewDistribution(b, testenv.DistributionOptions{
		ProxyRemoteURL: hub.URL, ProxyUsername: upstreamUser, ProxyPassword: upstreamSecret})
	mirrors := []mirror{{"regcache", rc.url, rc.pid}, {"proxy", dist.URL, dist.PID}}
	mems := map[string]*rss{"regcache": newRSS(rc.pid), "proxy": newRSS(dist.PID)}
	clients := map[string]*client{}
	for _, m := range mirrors {
		clients[m.name] = newClient(m.url, "", "")
	}
	direct := newClient(hub.URL, upstreamUser, upstreamSecret)
	defer func() {
		for _, c := range clients {
			c.close()
		}
		direct.close()
	}()
	res := results{
		warmMBps: map[string]float64{}, burstUpBytes: map[string]float64{}, burstUpGETs: map[string]int{},
		burstCold: map[string]time.Duration{}, burstWarm: map[string]time.Duration{}, burstWarmUp: map[string]float64{},
		coldPull: map[string]time.Duration{}, coldPullUpBytes: map[string]float64{}, coldLastByte: map[string]time.Duration{}, coldPullCPU: map[string]time.Duration{}, warm64: map[string]time.Duration{},
		rssOne: map[string]int64{}, rss64: map[string]int64{}, rssWhole: map[string]int64{},
		tenLayer: map[string]time.Duration{}, economy: map[string][4]int{},
	}
	must := func(err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
	}
	timed := func(fn func() error) time.Duration {
		b.Helper()
		start := time.Now()
		must(fn())
		return time.Since(start)
	}

	// Row 3: one cold pull of the 1 GiB image through each mirror, against
	// the same pull straight from the upstream (before and after, averaged).
	pullBig := func(c *client) func() error {
		return func() error { return c.pullImage(ctx, bigImg.Repo, bigImg.Tag, layerParallel) }
	}
	recycle := func() {
		took, err := recyclePageCache(b.TempDir(), big+big/2)
		must(err)
		res.recycle = append(res.recycle, took)
	}
	recycle()
	res.direct = append(res.direct, timed(pullBig(direct)))
	logf("row 3: direct pull %v", res.direct[0])
	for _, m := range mirrors {
		hub.ResetCounters()
		recycle()
		c0 := cpuTime(b, m.pid)
		res.coldPull[m.name] = timed(pullBig(clients[m.name]))
		res.coldPullCPU[m.name] = cpuTime(b, m.pid) - c0
		res.coldPullUpBytes[m.name] = float64(hub.BlobBytes(string(bigLayer.Digest))) / float64(bigLayer.Size)
		c := clients[m.name]
		c.mu.Lock()
		res.coldLastByte[m.name] = c.lastByte[string(bigLayer.Digest)]
		c.mu.Unlock()
		logf("row 3: cold pull through %s %v (its CPU time %v)", m.name, res.coldPull[m.name], res.coldPullCPU[m.name])
	}
	recycle()
	res.direct = append(res.direct, timed(pullBig(direct)))
	logf("row 3: direct pull %v", res.direct[1])

	// Row 1: warm throughput of the 1 GiB blob, one client, against nginx
	// serving regcache's own copy of it from the same disk.
	enc := bigLayer.Digest.Encoded()
	storeFile := filepath.Join(rc.dir, "data", "blobs", "sha256", enc[:2], enc)
	if _, err := os.Stat(storeFile); err != nil {
		b.Fatalf("regcache's copy of the big layer: %v", err)
	}
	ngx := startNginx(b, filepath.Dir(storeFile))
	nginxClient := newClient(ngx.url, "", "")
	defer nginxClient.close()
	samples := map[string][]float64{}
	for range warmRepeats {
		for _, name := range []string{"nginx", "regcache", "proxy"} {
			var d time.Duration
			if name == "nginx" {
				d = timed(func() error { return nginxClient.fetch(ctx, "", "/files/"+enc, string(bigLayer.Digest), bigLayer.Size) })
			} else {
				d = timed(func() error {
					return clients[name].blob(ctx, bigImg.Repo, string(bigLayer.Digest), bigLayer.Size)
				})
			}
			samples[name] = append(samples[name], float64(bigLayer.Size)/d.Seconds()/1e6)
		}
	}
	for name, s := range samples {
		res.warmMBps[name] = median(s)
		logf("row 1: warm %s %.0f MB/s (samples %.0f)", name, res.warmMBps[name], s)
	}
	for name, r := range mems {
		r.end("one client")
		res.rssOne[name] = r.byPhase["one client"]
	}

	// Row 4: 64 concurrent warm pulls of the 1 GiB blob, peak RSS during them.
	for _, m := range mirrors {
		d, err := clients[m.name].burst(ctx, warmClients, bigImg.Repo, string(bigLayer.Digest), bigLayer.Size)
		must(err)
		res.warm64[m.name] = d
		mems[m.name].end("64 warm")
		res.rss64[m.name] = mems[m.name].byPhase["64 warm"]
		logf("row 4: %d warm pulls through %s %v, peak RSS %d MiB", warmClients, m.name, d, res.rss64[m.name]>>20)
	}

	// Row 2: 32 clients at once on a cold 256 MiB blob, then the same burst warm.
	for _, m := range mirrors {
		dg := string(burstLayer.Digest)
		hub.ResetCounters()
		d, err := clients[m.name].burst(ctx, burstClients, burstImg.Repo, dg, burstLayer.Size)
		must(err)
		res.burstCold[m.name] = d
		time.Sleep(2 * time.Second) // let a mirror finish storing what it fetched
		res.burstUpBytes[m.name] = float64(hub.BlobBytes(dg)) / float64(burstLayer.Size)
		res.burstUpGETs[m.name] = hub.CountRef("GET", testenv.KindCDN, dg)
		hub.ResetCounters()
		res.burstWarm[m.name], err = clients[m.name].burst(ctx, burstClients, burstImg.Repo, dg, burstLayer.Size)
		must(err)
		res.burstWarmUp[m.name] = float64(hub.BlobBytes(dg)) / float64(burstLayer.Size)
		logf("row 2: %s cold burst %v (upstream %.2f× in %d GETs), warm burst %v",
			m.name, d, res.burstUpBytes[m.name], res.burstUpGETs[m.name], res.burstWarm[m.name])
	}
	for _, r := range mems {
		r.end("burst")
	}

	// Row 5: a cold ten-layer pull, three layers at a time, with every
	// upstream blob connection throttled.
	hub.SetFault(testenv.AllBlobs, testenv.Throttle(throttleBPS))
	pullTen := func(c *client) func() error {
		return func() error { return c.pullImage(ctx, tenImg.Repo, tenImg.Tag, layerParallel) }
	}
	res.tenLayer["direct"] = timed(pullTen(direct))
	logf("row 5: ten layers direct %v", res.tenLayer["direct"])
	for _, m := range mirrors {
		res.tenLayer[m.name] = timed(pullTen(clients[m.name]))
		logf("row 5: ten layers through %s %v", m.name, res.tenLayer[m.name])
	}
	// Not a target: the same pull through a regcache whose prefetch may
	// fetch every blob of the image at once, to show what the knob buys.
	rcWide := startRegcache(b, bin, "regcache-prefetch-wide", hub, upstreamUser, upstreamSecret,
		fmt.Sprintf("REGCACHE_PREFETCH_PARALLEL=%d", len(tenImg.Layers)+1))
	wide := newClient(rcWide.url, "", "")
	defer wide.close()
	res.tenLayer["regcache wide"] = timed(pullTen(wide))
	logf("row 5: ten layers through regcache with prefetch parallel %d %v", len(tenImg.Layers)+1, res.tenLayer["regcache wide"])
	hub.ClearFaults()
	time.Sleep(time.Second) // background fills end before the counters reset
	for _, r := range mems {
		r.end("ten layers")
	}

	// Row 6: upstream economy of 100 pulls of a multi-arch tag.
	multi := imgs.ManifestList
	economy := func(name string, c *client) {
		hub.ResetCounters()
		for range economyPulls {
			must(c.pullPlatform(ctx, multi.Repo, multi.Tag))
		}
		time.Sleep(500 * time.Millisecond)
		var e [4]int
		for _, r := range hub.Requests() {
			switch {
			case r.Kind == testenv.KindToken:
				e[2]++
			case r.Kind != testenv.KindManifest:
			case r.Status == http.StatusUnauthorized:
				e[3]++ // a challenge, not a pull: Docker Hub counts only served GETs
			case r.Method == http.MethodGet:
				e[0]++
			case r.Method == http.MethodHead:
				e[1]++
			}
		}
		res.economy[name] = e
		logf("row 6: %s %v", name, res.economy[name])
		if os.Getenv("BENCH_DEBUG") != "" {
			for _, r := range hub.Requests() {
				if r.Kind == testenv.KindManifest || r.Kind == testenv.KindToken {
					logf("  %s %s %s %s %d", r.Server, r.Method, r.Kind, r.Ref, r.Status)
				}
			}
		}
	}
	economy("regcache", clients["regcache"])
	economy("proxy", clients["proxy"])
	rc0 := startRegcache(b, bin, "regcache-fresh0", hub, upstreamUser, upstreamSecret, "REGCACHE_FRESHNESS=0s")
	c0 := newClient(rc0.url, "", "")
	defer c0.close()
	economy("regcache freshness 0", c0)
	for name, r := range mems {
		r.end("economy")
		res.rssWhole[name] = r.whole
		if len(r.failures) > 0 {
			b.Errorf("%s: reading VmHWM: %v", name, r.failures)
		}
		if !r.resetOK {
			logf("note: could not reset VmHWM of %s; per-phase peaks are cumulative", name)
		}
	}

	table := render(res, f, big, burst, ten, time.Since(started), revision(bin))
	fmt.Print(table)
	if out := os.Getenv("BENCH_TABLE"); out != "" {
		must(os.WriteFile(out, []byte(table), 0o644))
	}
	b.ReportMetric(res.warmMBps["regcache"]/res.warmMBps["nginx"], "warm-rc/nginx")
	b.ReportMetric(res.burstUpBytes["regcache"], "burst-upstream-bytes/blob")
	b.ReportMetric(ratio(res.burstCold["regcache"], res.burstWarm["regcache"]), "burst-cold/warm")
	b.ReportMetric(ratio(res.coldPull["regcache"], meanDur(res.direct)), "cold/direct")
	b.ReportMetric(float64(res.rssWhole["regcache"])/mib, "rc-peak-MiB")
	b.ReportMetric(ratio(res.tenLayer["regcache"], res.tenLayer["proxy"]), "ten-layer-rc/proxy")
}

// recyclePageCache writes size bytes into a file under dir and deletes
// it, and returns how long that took. On a VM whose hypervisor backs guest
// memory on first touch and takes freed memory back (this machine:
// virtio_balloon with free-page reporting), the first process to put a
// GiB into the page cache pays about 2-3 s of system time per GiB to the
// hypervisor, and one that reuses just-freed pages 0.2 s (a 1 GiB write
// measured both ways). A mirror writes each cold blob into the page cache
// and a direct pull writes nothing, so without this the row measures
// which process met fresh memory first. Each row-3 pull starts right
// after it, so every one of them finds recycled pages.
func recyclePageCache(dir string, size int64) (time.Duration, error) {
	start := time.Now()
	f, err := os.CreateTemp(dir, "recycle-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 64<<10)
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), os.Remove(f.Name())
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func meanDur(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func ratio(a, b time.Duration) float64 { return a.Seconds() / b.Seconds() }

// verdict says whether v meets a target: "≤" or "≥" limit.
func verdict(v float64, op string, limit float64) string {
	ok := v <= limit
	if op == "≥" {
		ok = v >= limit
	}
	if math.IsNaN(v) {
		ok = false
	}
	if ok {
		return "met"
	}
	return "**missed**"
}

func render(r results, f float64, big, burst, ten int64, took time.Duration, rev string) string {
	var sb strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	mb := func(n int64) string { return fmt.Sprintf("%d MiB", n>>20) }
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	host, _ := os.Hostname()
	p("")
	p("regcache benchmark, %s, %s, %d cores (GOMAXPROCS %d), %s, scale %g, took %s",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), cpuModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), host, f, took.Round(time.Second))
	p("regcache %s; sizes: big blob %s, burst blob %s, ten-layer image %s; proxy = Debian docker-registry 2.8 in proxy mode", rev, mb(big), mb(burst), mb(ten))
	p("")
	p("| # | measure | regcache | 2.8 proxy | reference | ratio | target | |")
	p("|---|---|---|---|---|---|---|---|")
	rcW, pxW, ngW := r.warmMBps["regcache"], r.warmMBps["proxy"], r.warmMBps["nginx"]
	p("| 1 | warm %s blob, one client (MB/s, median of %d) | %.0f | %.0f | nginx %.0f | regcache/nginx %.2f | ≥ 0.9 | %s |",
		mb(big), warmRepeats, rcW, pxW, ngW, rcW/ngW, verdict(rcW/ngW, "≥", 0.9))
	p("| 1 | | | | | regcache/proxy %.2f | ≥ 1.0 | %s |", rcW/pxW, verdict(rcW/pxW, "≥", 1))
	p("| 2 | %d-client cold burst, %s blob: upstream bytes / blob size | %.2f (%d GETs) | %.2f (%d GETs) | | regcache %.2f | = 1.0 | %s |",
		burstClients, mb(burst), r.burstUpBytes["regcache"], r.burstUpGETs["regcache"], r.burstUpBytes["proxy"], r.burstUpGETs["proxy"],
		r.burstUpBytes["regcache"], verdict(math.Abs(r.burstUpBytes["regcache"]-1), "≤", 0.001))
	rcB, pxB := ratio(r.burstCold["regcache"], r.burstWarm["regcache"]), ratio(r.burstCold["proxy"], r.burstWarm["proxy"])
	p("| 2 | cold burst wall time / warm burst wall time | %.2f (%s / %s) | %.2f (%s / %s) | | regcache %.2f | ≤ 1.3 | %s |",
		rcB, secs(r.burstCold["regcache"]), secs(r.burstWarm["regcache"]), pxB, secs(r.burstCold["proxy"]), secs(r.burstWarm["proxy"]), rcB, verdict(rcB, "≤", 1.3))
	dir := meanDur(r.direct)
	rcC, pxC := ratio(r.coldPull["regcache"], dir), ratio(r.coldPull["proxy"], dir)
	p("| 3 | one cold %s pull / same pull direct from upstream | %.2f (%s) | %.2f (%s) | direct %s | regcache %.2f | ≤ 1.25 | %s |",
		mb(big), rcC, secs(r.coldPull["regcache"]), pxC, secs(r.coldPull["proxy"]), secs(dir), rcC, verdict(rcC, "≤", 1.25))
	p("| 4 | peak RSS (VmHWM), rows 1 and 3 (one client) | %s | %s | | | | |", mb(r.rssOne["regcache"]), mb(r.rssOne["proxy"]))
	p("| 4 | peak RSS during %d concurrent warm %s pulls | %s (%s) | %s (%s) | | | ≤ 150 MiB | %s |", warmClients, mb(big),
		mb(r.rss64["regcache"]), secs(r.warm64["regcache"]), mb(r.rss64["proxy"]), secs(r.warm64["proxy"]),
		verdict(float64(r.rss64["regcache"]), "≤", 150*mib))
	p("| 4 | peak RSS over the whole run | %s | %s | | | ≤ 150 MiB | %s |", mb(r.rssWhole["regcache"]), mb(r.rssWhole["proxy"]),
		verdict(float64(r.rssWhole["regcache"]), "≤", 150*mib))
	rcT := ratio(r.tenLayer["regcache"], r.tenLayer["proxy"])
	p("| 5 | cold ten-layer %s pull, 3 at a time, upstream %.0f MB/s per connection | %s | %s | direct %s | regcache/proxy %.2f | ≤ 0.5 | %s |",
		mb(ten), throttleBPS/1e6, secs(r.tenLayer["regcache"]), secs(r.tenLayer["proxy"]), secs(r.tenLayer["direct"]), rcT, verdict(rcT, "≤", 0.5))
	e := func(name string) string {
		v := r.economy[name]
		out := fmt.Sprintf("%d / %d / %d", v[0], v[1], v[2])
		if v[3] > 0 {
			out += fmt.Sprintf(" (+%d 401)", v[3])
		}
		return out
	}
	p("| 6 | %d pulls of a multi-arch tag: upstream manifest GETs / HEADs / token requests | %s (freshness 1m); %s (freshness 0) | %s | | | regcache: GETs on the first pull only; no HEAD within the window, one per pull after it | %s |",
		economyPulls, e("regcache"), e("regcache freshness 0"), e("proxy"), economyVerdict(r.economy))
	p("")
	p("Upstream bytes of the cold %s pull, per blob size: regcache %.2f, proxy %.2f. Upstream bytes during the warm burst: regcache %.2f, proxy %.2f.",
		mb(big), r.coldPullUpBytes["regcache"], r.coldPullUpBytes["proxy"], r.burstWarmUp["regcache"], r.burstWarmUp["proxy"])
	p("Cold %s pull, wait for the last byte after all others had arrived: regcache %s, proxy %s.",
		mb(big), r.coldLastByte["regcache"].Round(time.Millisecond), r.coldLastByte["proxy"].Round(time.Millisecond))
	p("Cold %s pull, the mirror process's CPU time: regcache %s, proxy %s (the proxy stores the blob with a second upstream fetch in the background, which this counts only in part); regcache/proxy wall time %.2f. Before each row-3 pull %s of page cache was recycled (%s; see recyclePageCache).",
		mb(big), secs(r.coldPullCPU["regcache"]), secs(r.coldPullCPU["proxy"]), ratio(r.coldPull["regcache"], r.coldPull["proxy"]), mb(big+big/2), joinDur(r.recycle))
	p("Row 5 with REGCACHE_PREFETCH_PARALLEL=11 (default 16), not a target: %s, regcache/proxy %.2f.",
		secs(r.tenLayer["regcache wide"]), ratio(r.tenLayer["regcache wide"], r.tenLayer["proxy"]))
	p("Direct pulls: %s. %d warm pulls aggregate: regcache %.0f MB/s, proxy %.0f MB/s.", joinDur(r.direct), warmClients,
		float64(warmClients)*float64(big)/r.warm64["regcache"].Seconds()/1e6, float64(warmClients)*float64(big)/r.warm64["proxy"].Seconds()/1e6)
	return sb.String()
}

// economyVerdict: within the window one pull's worth of GETs (index and
// platform manifest) and no HEAD; with freshness 0 the same GETs and one
// HEAD for every later pull.
func economyVerdict(e map[string][4]int) string {
	w, z := e["regcache"], e["regcache freshness 0"]
	if w[0] <= 2 && w[1] == 0 && z[0] <= 2 && z[1] <= economyPulls {
		return "met"
	}
	return "**missed**"
}

func joinDur(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.2f s", d.Seconds()))
	}
	return strings.Join(s, ", ")
}

// revision says which commit the regcache binary was built from, and
// whether the working tree had uncommitted changes.
func revision(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "revision unknown"
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" { // built with -buildvcs=false: ask git about the checkout
		out, err := exec.Command("git", "rev-parse", "HEAD").Output()
		if err != nil {
			return "revision unknown"
		}
		rev = strings.TrimSpace(string(out))
		modified = "false"
		if dirty, _ := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); len(dirty) > 0 {
			modified = "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		return "at " + rev + " plus uncommitted changes"
	}
	return "at " + rev
}

func cpuModel() string {
	raw, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
