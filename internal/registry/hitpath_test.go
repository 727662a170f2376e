package registry

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/metrics"
)

// TestCleanV2 holds the one-pass check to its definition (no "//", "/./"
// or "/../", no "/." or "/.." at the end) on every path of up to seven
// bytes from '/', '.' and 'a' after "/v2" and "/v2/".
func TestCleanV2(t *testing.T) {
	want := func(p string) bool {
		if p != "/v2" && !strings.HasPrefix(p, "/v2/") {
			return false
		}
		return !strings.Contains(p, "//") && !strings.Contains(p, "/./") && !strings.Contains(p, "/../") &&
			!strings.HasSuffix(p, "/.") && !strings.HasSuffix(p, "/..")
	}
	var walk func(p string, n int)
	checked := 0
	walk = func(p string, n int) {
		checked++
		if got := cleanV2(p); got != want(p) {
			t.Fatalf("cleanV2(%q) = %v, want %v", p, got, !got)
		}
		if n == 0 {
			return
		}
		for _, c := range []string{"/", ".", "a"} {
			walk(p+c, n-1)
		}
	}
	walk("/v2", 8)
	walk("/x", 3)
	if checked < 3000 {
		t.Fatalf("only %d paths checked", checked)
	}
}

// TestRequestSeries: the cached counters are the vector's series of the
// label set asked, the same one each time, also when asked at once.
func TestRequestSeries(t *testing.T) {
	m := metrics.New(prometheus.NewRegistry())
	rs := &requestSeries{m: m}
	keys := []requestKey{
		{kind: "manifest", method: "GET", cache: "hit", status: 200},
		{kind: "manifest", method: "HEAD", cache: "hit", status: 200},
		{kind: "blob", method: "GET", cache: "miss", status: 404},
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 300 {
				k := keys[i%len(keys)]
				c := rs.get(k)
				c.requests.Inc()
				c.bytes.Add(2)
			}
		})
	}
	wg.Wait()
	for _, k := range keys {
		if got := counterValue(t, m.Requests.WithLabelValues(k.kind, k.method, k.cache, metrics.Code(k.status))); got != 800 {
			t.Errorf("%+v: %v requests, want 800", k, got)
		}
	}
	if got := counterValue(t, m.Bytes.WithLabelValues("hit")); got != 3200 {
		t.Errorf("hit bytes %v, want 3200", got)
	}
	if len(*rs.cur.Load()) != len(keys) {
		t.Errorf("%d label sets cached, want %d", len(*rs.cur.Load()), len(keys))
	}
}
