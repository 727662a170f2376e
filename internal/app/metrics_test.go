package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/regcache/regcache/internal/testenv"
)

// scrape is one parse of /metrics with the Prometheus text parser.
type scrape map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, admin string) scrape {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return mf
}

// value is the sample of name whose labels include want (0 if none).
func (s scrape) value(name string, want ...string) float64 {
	mf := s[name]
	if mf == nil {
		return 0
	}
	var sum float64
	for _, m := range mf.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			ok = ok && labels[want[i]] == want[i+1]
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Untyped != nil:
			sum += m.Untyped.GetValue()
		}
	}
	return sum
}

// fetch GETs a path of the mirror and returns the status and body length.
func fetch(t *testing.T, host, path string) (int, int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, n
}

// TestMetricsMoveWithPulls: scripted pulls through the mirror (misses,
// hits, a stale answer with the upstream down, a 429), each followed by a
// scrape parsed with the Prometheus text parser; every counter moves as
// the pulls imply. Then the ready files of deploy/ are checked against the
// last scrape: every metric the Grafana dashboard and the alert rules name
// exists in it, and promtool accepts (and unit-tests) the rules.
func TestMetricsMoveWithPulls(t *testing.T) {
	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	imgs := hub.Seed(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_PREFETCH": "false", "REGCACHE_FRESHNESS": "1ms", "REGCACHE_PROBE_INTERVAL": "100ms", "REGCACHE_MAX_SIZE": "1GiB"})
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()
	img := imgs.Single
	blobs := img.Blobs()
	var blobBytes int64
	for _, b := range blobs {
		blobBytes += b.Size
	}
	pull := func() (manifestBytes int64) {
		code, n := fetch(t, m.Host, "/v2/"+img.Repo+"/manifests/"+img.Tag)
		if code != 200 {
			t.Fatalf("manifest: %d", code)
		}
		for _, b := range blobs {
			if code, _ := fetch(t, m.Host, "/v2/"+img.Repo+"/blobs/"+b.Digest.String()); code != 200 {
				t.Fatalf("blob %s: %d", b.Digest, code)
			}
		}
		return n
	}
	k := float64(len(blobs))

	// Cold: every request a miss, every blob fetched once.
	mb := float64(pull())
	waitFor(t, "fills committed", func() bool {
		return scrapeMetrics(t, admin.URL).value("regcache_fills_total", "result", "committed") == k
	})
	s := scrapeMetrics(t, admin.URL)
	expect(t, "cold", s, map[string]float64{
		"regcache_request_results_total{result=miss}":    1 + k,
		"regcache_request_results_total{result=hit}":     0,
		"regcache_pulls_saved_total{upstream=docker.io}": 0,
		"regcache_served_bytes_total{source=upstream}":   mb + float64(blobBytes),
		"regcache_upstream_fetched_bytes_total":          float64(blobBytes),
		"regcache_cache_bytes":                           float64(blobBytes) + mb, // blobs and the manifest: both count against the cap
		"regcache_cache_max_bytes":                       1 << 30,
		"regcache_upstream_state{state=up}":              1,
		"regcache_upstream_ratelimit_remaining":          99,
		"regcache_upstream_ratelimit_limit":              100,
		"regcache_upstream_ratelimit_reserve":            10,
	})
	if r := s.value("regcache_upstream_ratelimit_reset_seconds"); r < 21500 || r > 21600 {
		t.Errorf("reset seconds %v, want about 21600 (the window)", r)
	}

	// Warm: the manifest revalidated with a HEAD (not a counted pull), the
	// blobs from the store.
	pull()
	s = answered(t, admin.URL, 2*(1+k))
	expect(t, "warm", s, map[string]float64{
		"regcache_request_results_total{result=hit}":     1 + k,
		"regcache_request_results_total{result=miss}":    1 + k,
		"regcache_pulls_saved_total{upstream=docker.io}": 1,
		"regcache_served_bytes_total{source=cache}":      mb + float64(blobBytes),
		"regcache_upstream_fetched_bytes_total":          float64(blobBytes),
		"regcache_upstream_ratelimit_remaining":          99,
	})

	// The upstream goes down: the probe says so, the tag is served stale.
	hub.Down()
	waitFor(t, "stale_serving state", func() bool {
		return scrapeMetrics(t, admin.URL).value("regcache_upstream_state", "state", "stale_serving") == 1
	})
	if code, _ := fetch(t, m.Host, "/v2/"+img.Repo+"/manifests/"+img.Tag); code != 200 {
		t.Fatalf("stale manifest: %d", code)
	}
	s = answered(t, admin.URL, 2*(1+k)+1)
	expect(t, "stale", s, map[string]float64{
		"regcache_request_results_total{result=stale}":       1,
		"regcache_stale_responses_total{upstream=docker.io}": 1,
		"regcache_pulls_saved_total{upstream=docker.io}":     2,
		"regcache_upstream_state{state=up}":                  0,
		"regcache_upstream_down":                             1,
	})

	// Back up, no budget left: an uncached tag gets the 429.
	hub.Up()
	hub.SetRateLimit(100, 0)
	ml := imgs.ManifestList
	if code, _ := fetch(t, m.Host, "/v2/"+ml.Repo+"/manifests/"+ml.Tag); code != http.StatusTooManyRequests {
		t.Fatalf("pull with no budget: %d, want 429", code)
	}
	s = answered(t, admin.URL, 2*(1+k)+2)
	expect(t, "429", s, map[string]float64{
		"regcache_request_results_total{result=error}":   1,
		"regcache_request_results_total{result=miss}":    1 + k,
		"regcache_upstream_state{state=rate_limited}":    1,
		"regcache_upstream_ratelimit_remaining":          0,
		"regcache_pulls_saved_total{upstream=docker.io}": 2,
	})

	// The ready files name only metrics that exist.
	checkDeploy(t, s)
}

// answered scrapes once n content requests are counted: a request is
// counted when its handler returns, which may be just after the client
// read the last byte.
func answered(t *testing.T, admin string, n float64) scrape {
	t.Helper()
	var s scrape
	waitFor(t, fmt.Sprintf("%v requests counted", n), func() bool {
		s = scrapeMetrics(t, admin)
		return s.value("regcache_request_results_total") == n
	})
	return s
}

// expect compares samples written name{label=value,...} with want.
func expect(t *testing.T, step string, s scrape, want map[string]float64) {
	t.Helper()
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		name, rest, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
		var labels []string
		if rest != "" {
			for _, kv := range strings.Split(rest, ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels = append(labels, k, v)
			}
		}
		if s[name] == nil {
			t.Errorf("%s: %s is not in the scrape", step, name)
			continue
		}
		if got := s.value(name, labels...); got != want[key] {
			t.Errorf("%s: %s = %v, want %v", step, key, got, want[key])
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var metricName = regexp.MustCompile(`\bregcache_[a-z_]+\b`)

// checkDeploy checks deploy/: the Grafana dashboard is JSON whose every
// expression names metrics present in s; the alert rules name metrics
// present in s and pass promtool's check and unit tests.
func checkDeploy(t *testing.T, s scrape) {
	t.Helper()
	dir := filepath.Join("..", "..", "deploy")
	raw, err := os.ReadFile(filepath.Join(dir, "grafana", "regcache.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/regcache.json: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("grafana panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs++
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				if s[name] == nil {
					t.Errorf("grafana panel %q names %s, which the scrape lacks", p.Title, name)
				}
			}
		}
	}
	if exprs < 10 {
		t.Errorf("grafana dashboard has %d queries", exprs)
	}
	rules := filepath.Join(dir, "prometheus", "alerts.yml")
	b, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range metricName.FindAllString(string(b), -1) {
		if s[name] == nil {
			t.Errorf("alerts.yml names %s, which the scrape lacks", name)
		}
	}
	promtool := testenv.RequireTool(t, "promtool")
	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", filepath.Join(dir, "prometheus", "alerts_test.yml")}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
