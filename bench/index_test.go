package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/testenv"
)

// The scale of issue 10: an index of a million blobs and a hundred
// thousand manifests.
const (
	scaleImages   = 90_000 // image manifests, 10 own layers and 1 shared base each
	scaleIndexes  = 10_000 // indexes of 2 image manifests each
	scaleShared   = 1_000  // base layers shared by 90 images each
	scaleOrphans  = 99_000 // blobs no manifest references (pulled by digest)
	scaleOwn      = 10     // own layers per image manifest
	scaleRepos    = 1_000  // repositories the tags are spread over
	scaleUpstream = "docker.io"
)

func blobDigest(i int) digest.Digest     { return digest.FromString("blob-" + strconv.Itoa(i)) }
func manifestDigest(i int) digest.Digest { return digest.FromString("manifest-" + strconv.Itoa(i)) }

// generateIndex writes a data directory whose index holds the scale's
// entries (the store holds no files: a server started on an index closed
// cleanly reads none at start). Content: 900,000 own layers, 1,000 shared
// base layers and 99,000 orphans (1,000,000 blobs, sizes log-uniform from
// 1 KiB to 64 MiB); 90,000 image manifests and 10,000 indexes (100,000
// manifests), last used over 30 days; a tag for each of the 80,000 top
// manifests, over 1,000 repositories; the holdings and origins the mirror
// records with them. Returns the total bytes.
func generateIndex(b *testing.B, data string) int64 {
	b.Helper()
	if err := os.MkdirAll(data, 0o755); err != nil {
		b.Fatal(err)
	}
	ix, err := cacheindex.Open(filepath.Join(data, "index.db"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(10, 10))
	now := time.Now()
	ago := func() time.Time { return now.Add(-time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))) }
	nblobs := scaleImages*scaleOwn + scaleShared + scaleOrphans
	blobs := make([]cacheindex.BatchBlob, nblobs)
	access := make([]time.Time, scaleImages+scaleIndexes)
	for i := range access {
		access[i] = ago()
	}
	for i := range blobs {
		size := int64(math.Exp(math.Log(1<<10) + rng.Float64()*(math.Log(64<<20)-math.Log(1<<10))))
		at := ago()
		if i < scaleImages*scaleOwn {
			at = access[i/scaleOwn] // a manifest hit marks its layers
		}
		blobs[i] = cacheindex.BatchBlob{Digest: blobDigest(i), Entry: cacheindex.BlobEntry{Size: size, Created: at, LastAccess: at}}
	}
	var total int64
	for _, x := range blobs {
		total += x.Entry.Size
	}
	slices.SortFunc(blobs, func(a, b cacheindex.BatchBlob) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	const batch = 50_000
	for len(blobs) > 0 {
		n := min(batch, len(blobs))
		if err := ix.PutBatch(b.Context(), cacheindex.Batch{Blobs: blobs[:n]}); err != nil {
			b.Fatal(err)
		}
		blobs = blobs[n:]
	}
	repo := func(root int) string { return fmt.Sprintf("org/r%03d", root%scaleRepos) }
	var manifests []cacheindex.BatchManifest
	var tags []cacheindex.BatchTag
	for m := range scaleImages {
		refs := make([]digest.Digest, 0, scaleOwn+1)
		for j := range scaleOwn {
			refs = append(refs, blobDigest(m*scaleOwn+j))
		}
		refs = append(refs, blobDigest(scaleImages*scaleOwn+m%scaleShared))
		root := m
		if m < 2*scaleIndexes {
			root = scaleImages + m/2 // a child of an index
		}
		manifests = append(manifests, cacheindex.BatchManifest{Upstream: scaleUpstream, Repo: repo(root), Digest: manifestDigest(m),
			Entry: cacheindex.ManifestEntry{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1200 + int64(m%800), Refs: refs, LastAccess: access[m]}})
	}
	for k := range scaleIndexes {
		id := scaleImages + k
		manifests = append(manifests, cacheindex.BatchManifest{Upstream: scaleUpstream, Repo: repo(id), Digest: manifestDigest(id),
			Entry: cacheindex.ManifestEntry{MediaType: "application/vnd.oci.image.index.v1+json", Size: 600,
				Refs: []digest.Digest{manifestDigest(2 * k), manifestDigest(2*k + 1)}, LastAccess: access[id]}})
	}
	for root := 2 * scaleIndexes; root < scaleImages+scaleIndexes; root++ {
		tags = append(tags, cacheindex.BatchTag{Upstream: scaleUpstream, Repo: repo(root), Tag: "v" + strconv.Itoa(root),
			Entry: cacheindex.TagEntry{Digest: manifestDigest(root), Size: 1000, Fetched: access[root], Checked: access[root]}})
	}
	slices.SortFunc(manifests, func(a, b cacheindex.BatchManifest) int { return strings.Compare(string(a.Digest), string(b.Digest)) })
	for _, x := range manifests {
		total += x.Entry.Size
	}
	for len(manifests) > 0 {
		n := min(batch/10, len(manifests))
		if err := ix.PutBatch(b.Context(), cacheindex.Batch{Manifests: manifests[:n]}); err != nil {
			b.Fatal(err)
		}
		manifests = manifests[n:]
	}
	if err := ix.PutBatch(b.Context(), cacheindex.Batch{Tags: tags}); err != nil {
		b.Fatal(err)
	}
	if got := ix.Totals(); got.Blobs != int64(nblobs) || got.Manifests != scaleImages+scaleIndexes {
		b.Fatalf("generated %+v", got)
	}
	if err := ix.Close(); err != nil {
		b.Fatal(err)
	}
	return total
}

// cachedIndex generates the index into data, or, with BENCH_INDEX_CACHE
// set to a directory, generates it there once and copies it into data
// (the eviction pass changes it, so every run gets a fresh copy).
func cachedIndex(b *testing.B, data string) int64 {
	b.Helper()
	cache := os.Getenv("BENCH_INDEX_CACHE")
	if cache == "" {
		return generateIndex(b, data)
	}
	totalFile := filepath.Join(cache, "total")
	if _, err := os.Stat(totalFile); err != nil {
		total := generateIndex(b, filepath.Join(cache, "data"))
		if err := os.WriteFile(totalFile, []byte(strconv.FormatInt(total, 10)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	raw, err := os.ReadFile(totalFile)
	if err != nil {
		b.Fatal(err)
	}
	total, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("cp", filepath.Join(cache, "data", "index.db"), filepath.Join(data, "index.db")).CombinedOutput(); err != nil {
		b.Fatalf("copy the cached index: %v %s", err, out)
	}
	// On disk before the server starts, as a closed index is: else the
	// server's first commit waits for the copy's writeback (0.4 s of a
	// measured start-up was that).
	f, err := os.Open(filepath.Join(data, "index.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return total
}

// procStatus reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM).
func procStatus(b *testing.B, pid int, field string) int64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// cpuTime is the user and system CPU time pid has used: on a shared
// machine it says what the work costs when the wall clock says how long
// the process waited for a core too.
func cpuTime(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command's closing parenthesis; utime and stime are
	// the 14th and 15th of the line, in clock ticks (100 per second).
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func mibs(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// BenchmarkIndexScale measures `regcache serve` (its own process, built
// from the checkout) on a generated index of 1,000,000 blobs and 100,000
// manifests: start-up (exec until /readyz answers), `cache ls` of one
// repository through the admin API (median of 21), one eviction pass over
// 10 % of the bytes (POST /cache/prune to 90 % of the total: the server's
// eviction plan by image and its deletions), and the server's resident
// memory after each (VmRSS) and at its peak (VmHWM). The background scrub is
// off: the store holds no files, and the scrub would drop every entry.
// Targets (issue 10): start-up < 1 s, pass < 5 s, ls < 100 ms, RSS < 150 MiB.
func BenchmarkIndexScale(b *testing.B) {
	bin := regcacheBinary(b)
	for b.Loop() {
		dir := b.TempDir()
		data := filepath.Join(dir, "data")
		genStart := time.Now()
		total := cachedIndex(b, data)
		fi, err := os.Stat(filepath.Join(data, "index.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("generated the index in %s: %s file, %.2f TB of blobs and manifests", time.Since(genStart).Round(time.Second), mibs(fi.Size()), float64(total)/1e12)

		addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
		admin := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
		// The upstream is a real registry (go-containerregistry's), up and
		// empty: nothing is fetched from it, and with it reachable no tag's
		// content is kept as an offline copy, so the pass evicts by last
		// use alone. BENCH_INDEX_UPSTREAM_DOWN=1 points the mirror at a
		// dead port instead: then every tagged image is an offline copy
		// and the pass takes unprotected images first.
		upstream := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		defer upstream.Close()
		upURL := upstream.URL
		if os.Getenv("BENCH_INDEX_UPSTREAM_DOWN") != "" {
			upURL = "http://127.0.0.1:9"
		}
		b.Logf("upstream %s", upURL)
		cmd := exec.Command(bin, "serve")
		cmd.Env = append(cleanEnv(), "REGCACHE_ADDR="+addr, "REGCACHE_ADMIN_ADDR="+admin, "REGCACHE_DATA="+data,
			"REGCACHE_UPSTREAM_URL="+upURL, "REGCACHE_UPSTREAM_NAME="+scaleUpstream,
			"REGCACHE_LOG_LEVEL=warn", "REGCACHE_SCRUB_INTERVAL=0", "HTTPS_PROXY=http://127.0.0.1:9")
		start := time.Now()
		p := startProc(b, "regcache", cmd, dir, "http://"+admin+"/readyz")
		startup := time.Since(start)
		cpuStart := cpuTime(b, p.pid)
		rssStart := procStatus(b, p.pid, "VmRSS")
		hwmStart := procStatus(b, p.pid, "VmHWM")
		resetHWM := func() {
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0); err != nil {
				b.Fatalf("reset VmHWM: %v", err)
			}
		}
		resetHWM()
		anonStart := procStatus(b, p.pid, "RssAnon")

		hc := &http.Client{Timeout: 5 * time.Minute}
		get := func(method, path string, body any) ([]byte, time.Duration) {
			var rd io.Reader
			if body != nil {
				j, _ := json.Marshal(body)
				rd = bytes.NewReader(j)
			}
			req, _ := http.NewRequest(method, "http://"+admin+path, rd)
			t0 := time.Now()
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			out, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(t0)
			if err != nil || resp.StatusCode != 200 {
				b.Fatalf("%s %s: %d %v %s", method, path, resp.StatusCode, err, out)
			}
			return out, took
		}
		var lsTimes []time.Duration
		var listed cache.Listing
		for i := range 21 {
			out, took := get("GET", fmt.Sprintf("/cache/ls?upstream=%s&repository=org/r%03d", scaleUpstream, (i*37)%scaleRepos), nil)
			lsTimes = append(lsTimes, took)
			if i == 0 {
				if err := json.Unmarshal(out, &listed); err != nil || len(listed.Images) == 0 {
					b.Fatalf("ls: %v, %d images", err, len(listed.Images))
				}
			}
		}
		cpuLs := cpuTime(b, p.pid) - cpuStart
		slices.Sort(lsTimes)
		lsMedian := lsTimes[len(lsTimes)/2]
		rssLs := procStatus(b, p.pid, "VmRSS")
		anonLs := procStatus(b, p.pid, "RssAnon")
		hwmLs := procStatus(b, p.pid, "VmHWM")
		resetHWM()

		cpuBefore := cpuTime(b, p.pid)
		out, evictTook := get("POST", "/cache/prune", cache.PruneRequest{ToSize: total * 9 / 10})
		cpuEvict := cpuTime(b, p.pid) - cpuBefore
		var pruned cache.PruneResult
		if err := json.Unmarshal(out, &pruned); err != nil {
			b.Fatal(err)
		}
		rssEvict := procStatus(b, p.pid, "VmRSS")
		anonEvict := procStatus(b, p.pid, "RssAnon")
		hwm := procStatus(b, p.pid, "VmHWM")
		time.Sleep(10 * time.Second) // the runtime returns freed heap to the system in the background
		rssSettled, anonSettled := procStatus(b, p.pid, "VmRSS"), procStatus(b, p.pid, "RssAnon")
		b.Logf("start-up %s; ls of one repository (%d tags) median %s (min %s, max %s); eviction pass %s: %d images, %d files, %.2f TB (%.1f %% of the bytes)",
			startup.Round(time.Millisecond), len(listed.Images), lsMedian.Round(100*time.Microsecond), lsTimes[0].Round(100*time.Microsecond),
			lsTimes[len(lsTimes)-1].Round(100*time.Microsecond), evictTook.Round(time.Millisecond),
			len(pruned.Images), pruned.Files, float64(pruned.Bytes)/1e12, 100*float64(pruned.Bytes)/float64(total))
		b.Logf("server CPU time (user+system): start-up %s, the 21 listings %s, the eviction pass %s; load average %s",
			cpuStart, cpuLs, cpuEvict, loadAvg())
		b.Logf("RSS (VmRSS) after start-up %s, after the listings %s, after the eviction pass %s; peak (VmHWM) during start-up %s, the listings %s, the pass %s",
			mibs(rssStart), mibs(rssLs), mibs(rssEvict), mibs(hwmStart), mibs(hwmLs), mibs(hwm))
		b.Logf("of which the process's own memory (RssAnon; the rest is pages of the mapped index file, page cache): %s, %s, %s",
			mibs(anonStart), mibs(anonLs), mibs(anonEvict))
		b.Logf("10 s after the pass: VmRSS %s, RssAnon %s", mibs(rssSettled), mibs(anonSettled))
		b.ReportMetric(startup.Seconds()*1000, "startup-ms")
		b.ReportMetric(cpuStart.Seconds()*1000, "startup-cpu-ms")
		b.ReportMetric(cpuEvict.Seconds(), "evict-cpu-s")
		b.ReportMetric(lsMedian.Seconds()*1000, "ls-ms")
		b.ReportMetric(evictTook.Seconds(), "evict-s")
		b.ReportMetric(float64(rssStart)/(1<<20), "rss-start-MiB")
		b.ReportMetric(float64(rssEvict)/(1<<20), "rss-after-evict-MiB")
		b.ReportMetric(float64(hwm)/(1<<20), "rss-peak-MiB")
		b.ReportMetric(float64(anonEvict)/(1<<20), "anon-after-evict-MiB")
		b.ReportMetric(float64(rssSettled)/(1<<20), "rss-settled-MiB")
	}
}

// BenchmarkIndexOpen is the index's share of start-up, in-process: Open of
// the generated index (every entry read and checked, totals counted) and
// Close. With BENCH_INDEX_CACHE the index is generated once and reused.
func BenchmarkIndexOpen(b *testing.B) {
	data := filepath.Join(b.TempDir(), "data")
	cachedIndex(b, data)
	path := filepath.Join(data, "index.db")
	for b.Loop() {
		ix, err := cacheindex.Open(path, time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if ix.Totals().Blobs != scaleImages*scaleOwn+scaleShared+scaleOrphans {
			b.Fatalf("totals %+v", ix.Totals())
		}
		if err := ix.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIndexEvictionPlan is the eviction pass's plan, in-process: the
// graph of a million blobs read and ordered by image, 10 % of the bytes
// chosen (nothing deleted).
func BenchmarkIndexEvictionPlan(b *testing.B) {
	data := filepath.Join(b.TempDir(), "data")
	total := cachedIndex(b, data)
	ix, err := cacheindex.Open(filepath.Join(data, "index.db"), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	for b.Loop() {
		p, err := ix.EvictionPlan(b.Context(), cacheindex.EvictPolicy{MaxSize: total * 9 / 10, LowWater: total * 9 / 10}, time.Now())
		if err != nil || len(p.Evict) == 0 {
			b.Fatalf("plan of %d files: %v", len(p.Evict), err)
		}
	}
}

func loadAvg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
