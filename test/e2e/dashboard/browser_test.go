// Package dashboard_test drives regcache's dashboard in a real browser. It
// lives in the test module (test/e2e), which holds chromedp, and starts
// regcache in-process with apptest, the harness regcache's own end-to-end
// tests use. (The test module may import regcache's internal packages: Go
// allows an import of .../internal/ from any package whose import path is
// under the directory above it, in whichever module, as gopls does with
// golang.org/x/tools/internal.)
package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// TestDashboardBrowser opens the dashboard in Debian's chromium (headless,
// driven with chromedp): the page loads with no console error (a script
// error, a refused asset or a CSP violation would log one), the cards
// change after more pulls without a reload, the four charts have drawn
// series, and the page fits a phone's width. Screenshots are kept in
// $REGCACHE_TEST_ARTIFACTS (default: the test's temporary directory).
//
// The charts' history samples every 10 s (the product's interval; the
// live point is added to each answer), so their third point comes about
// 10 s after the mirror starts: the chart poll waits up to 40 s.
func TestDashboardBrowser(t *testing.T) {
	chromium := testenv.RequireTool(t, "chromium")

	hub := testenv.NewHub(t)
	hub.SetRateLimit(100, 100)
	imgs := hub.Seed(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_MAX_SIZE": "1GiB", "REGCACHE_FRESHNESS": "10m"})
	admin := httptest.NewServer(m.App.AdminHandler())
	defer admin.Close()
	pullCrane(t, m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless,
		chromedp.WindowSize(1400, 1000), chromedp.Env("HTTPS_PROXY=http://127.0.0.1:9"))
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	var mu sync.Mutex
	var problems []string
	console := chromedp.Console(ctx)
	go func() {
		for msg, err := range console {
			if err != nil {
				return
			}
			if msg.Type == chromedp.ConsoleError || msg.IsException() {
				mu.Lock()
				problems = append(problems, msg.String())
				mu.Unlock()
			}
		}
	}()

	if err := chromedp.Do(ctx, chromedp.Navigate(admin.URL+"/")); err != nil {
		t.Fatal(err)
	}
	// The first data has arrived and been drawn.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`Number(document.body.dataset.updates || 0) >= 1`, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page never drew its data: %v", err)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	before := text(`[data-card="pulls-saved"] .big`)
	if before != "0" {
		t.Errorf("pulls saved after one cold pull: %q, want 0", before)
	}
	if up := text(`[data-card="upstream-docker.io"] .big`); up != "up" {
		t.Errorf("upstream card: %q, want up", up)
	}
	if h := text(`[data-card="headroom-docker.io"] .big`); !strings.Contains(h, "/ 100") {
		t.Errorf("headroom card: %q", h)
	}
	// The one client so far (crane, from 127.0.0.1) is the one node.
	if n := text(`[data-card="fleet"] .big`); n != "1" {
		t.Errorf("nodes card: %q, want 1", n)
	}
	if n := text(`[data-card="fleet"]`); !strings.Contains(n, "1 in the last day") || !strings.Contains(n, "0 gone quiet") {
		t.Errorf("nodes card: %q", n)
	}
	// A marker the page keeps only while it is not reloaded.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload = true`)); err != nil {
		t.Fatal(err)
	}

	// More pulls: warm ones (pulls saved) and another image (a miss).
	for range 3 {
		pullCrane(t, m.Host+"/"+imgs.Single.Repo+":"+imgs.Single.Tag)
	}
	pullCrane(t, m.Host+"/"+imgs.OCIIndex.Repo+":"+imgs.OCIIndex.Tag)
	after, err := chromedp.Run(ctx, chromedp.Poll[string](
		`(() => { const t = document.querySelector('[data-card="pulls-saved"] .big').textContent; return t !== "0" && t; })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the pulls-saved card did not change without a reload: %v", err)
	}
	if after != "3" {
		t.Errorf("pulls saved after three warm pulls: %q, want 3", after)
	}
	if kept, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__noReload === true`)); err != nil || !kept {
		t.Errorf("the page reloaded (marker gone): %v", err)
	}
	if top := text(`#top-pulls tbody`); !strings.Contains(top, "docker.io/library/single") {
		t.Errorf("top repositories: %q", top)
	}

	// The charts: each has at least one series drawn through two points or more.
	drawn, err := chromedp.Run(ctx, chromedp.Poll[map[string]int](`(() => {
		const out = {};
		for (const id of ["chart-requests", "chart-bandwidth", "chart-cache", "chart-ratelimit"]) {
			out[id] = Math.max(0, ...[...document.querySelectorAll("#" + id + " path.series")].map(p => Number(p.dataset.points)));
		}
		return Object.values(out).every(n => n >= 3) && out;
	})()`, chromedp.WithPollingTimeout(40*time.Second)))
	if err != nil {
		t.Fatalf("charts without drawn series: %v", err)
	}
	t.Logf("points per chart: %v", drawn)
	if hits, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#chart-requests path[data-series="hit"]').getAttribute("d")`)); err != nil || !strings.Contains(hits, "L") {
		t.Errorf("the hit series is not a line: %q %v", hits, err)
	}

	// A slow fill: its row has a progress bar, bytes, a rate and its reader.
	layer := imgs.ManifestList.Platforms[0].Layers[0]
	hub.SetFault(layer.Digest.String(), testenv.Throttle(max(layer.Size/4, 256)))
	slow := make(chan error, 1)
	go func() {
		code, _ := fetchQuiet(m.Host, "/v2/"+imgs.ManifestList.Repo+"/blobs/"+layer.Digest.String())
		if code != 200 {
			slow <- fmt.Errorf("slow blob: %d", code)
			return
		}
		slow <- nil
	}()
	row, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => {
		const tr = document.querySelector("#fills tbody tr");
		return tr && tr.querySelector(".bar > span") && tr.textContent;
	})()`, chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("no fill row with a progress bar: %v", err)
	}
	if !strings.Contains(row, "docker.io") || !strings.Contains(row, "/s") || !strings.Contains(row, " of ") {
		t.Errorf("fill row: %q", row)
	}
	t.Logf("fill row: %s", row)

	dir := os.Getenv("REGCACHE_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}
	shot("dashboard-1400x1000.png")

	// A phone: nothing wider than the screen.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	width, err := chromedp.Run(ctx, chromedp.Poll[string](`(() => {
		const w = document.documentElement.clientWidth, s = document.documentElement.scrollWidth;
		return w <= 400 && s <= w + 1 && (w + "/" + s);
	})()`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		sw, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.clientWidth + "/" + document.documentElement.scrollWidth`))
		t.Errorf("the page is wider than a phone (client/scroll width %s): %v", sw, err)
	}
	t.Logf("phone width client/scroll: %s", width)
	shot("dashboard-phone.png")
	if err := <-slow; err != nil {
		t.Error(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(problems, "\n"))
	}
}

// fetchQuiet GETs a path of the mirror off the test's goroutine.
func fetchQuiet(host, path string) (int, error) {
	resp, err := http.Get("http://" + host + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// pullCrane pulls ref through the mirror with go-containerregistry, every
// manifest and blob of every platform verified.
func pullCrane(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatalf("crane pull %s: %v", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(idx); err != nil {
			t.Fatalf("crane pull %s: %v", ref, err)
		}
		return
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("crane pull %s: %v", ref, err)
	}
}
