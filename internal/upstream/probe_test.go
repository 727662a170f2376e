package upstream

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
)

// TestProbeStates: the /v2/ probe goes out without credentials and is
// never a manifest GET; a refused connection or a 5xx marks the upstream
// down with the reason and since, and sets Health.Down; any answer below
// 500 (a 401 challenge) marks it up again.
func TestProbeStates(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusUnauthorized)
	var mu sync.Mutex
	var paths []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.Method+" "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(int(status.Load()))
	}))
	defer s.Close()
	c, err := New("docker.io", s.URL, auth.Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Health(); h.Probe.State != ProbeUnknown || h.Down {
		t.Fatalf("before any probe: %+v", h)
	}
	if err := c.Probe(t.Context()); err != nil {
		t.Fatalf("probe of a registry answering 401: %v", err)
	}
	if h := c.Health(); h.Probe.State != ProbeUp || h.Probe.LastProbe.IsZero() || h.Down {
		t.Fatalf("after a 401: %+v", h.Probe)
	}
	status.Store(http.StatusServiceUnavailable)
	if err := c.Probe(t.Context()); err == nil {
		t.Fatal("a 503 probe succeeded")
	}
	h := c.Health()
	if h.Probe.State != ProbeDown || h.Probe.Reason != "GET /v2/ answered 503 Service Unavailable" || h.Probe.Since.IsZero() || !h.Down {
		t.Fatalf("after a 503: %+v", h)
	}
	since := h.Probe.Since
	_ = c.Probe(t.Context())
	if h := c.Health(); !h.Probe.Since.Equal(since) {
		t.Errorf("a second failure moved since: %v → %v", since, h.Probe.Since)
	}
	status.Store(http.StatusOK)
	if err := c.Probe(t.Context()); err != nil || c.Health().Probe.State != ProbeUp || c.Health().Down {
		t.Fatalf("probe after recovery: %v %+v", err, c.Health().Probe)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range paths {
		if p != "GET /v2/ auth=" {
			t.Errorf("a probe sent %q, want only an anonymous GET /v2/", p)
		}
	}
	if len(paths) != 4 {
		t.Errorf("%d requests for 4 probes: %v", len(paths), paths)
	}
}

// TestProbeRefused: an upstream nobody listens on is down at the first
// probe, with the connection error as the reason.
func TestProbeRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := New("docker.io", "http://"+addr, auth.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Probe(t.Context()); err == nil {
		t.Fatal("probe of a closed port succeeded")
	}
	if p := c.Health().Probe; p.State != ProbeDown || p.Reason == "" {
		t.Fatalf("probe state: %+v", p)
	}
}

// TestWatchHealthIdle: WatchHealth probes at once, then only while the
// upstream is idle; a busy upstream's answers count as probes, and the
// next probe is announced.
func TestWatchHealthIdle(t *testing.T) {
	var pings, manifests atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/":
			pings.Add(1)
		default:
			manifests.Add(1)
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer s.Close()
	c, err := New("docker.io", s.URL, auth.Credentials{}, WithRetry(1, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	const every = 150 * time.Millisecond
	go func() { defer close(done); c.WatchHealth(ctx, every) }()
	deadline := time.Now().Add(5 * time.Second)
	for pings.Load() == 0 || c.Health().Probe.NextProbe.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no start-up probe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Busy: a request every 20ms answers for the upstream.
	busyUntil := time.Now().Add(6 * every)
	before := pings.Load()
	for time.Now().Before(busyUntil) {
		_, _ = c.ManifestHead(t.Context(), "library/x", oci.Reference{Tag: "latest"}, nil)
		time.Sleep(20 * time.Millisecond)
	}
	busy := pings.Load() - before
	// Idle again: probes resume.
	time.Sleep(4 * every)
	cancel()
	<-done
	idle := pings.Load() - before - busy
	if busy > 1 { // one may have been due as the traffic began
		t.Errorf("%d probes while requests answered every 20ms, want at most 1", busy)
	}
	if idle < 2 {
		t.Errorf("%d probes in 4 idle intervals, want at least 2", idle)
	}
	if manifests.Load() == 0 {
		t.Fatal("no requests were sent")
	}
	if c.Health().Probe.State != ProbeUp {
		t.Errorf("state %+v", c.Health().Probe)
	}
}

// TestResetEstimate: the reset is ratelimit-reset when sent, else the
// first reading of the window plus the window, kept while the budget only
// goes down.
func TestResetEstimate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	first := RateLimit{Limit: 100, Remaining: 99, Window: "21600", Updated: t0}
	r, est := resetOf(RateLimit{}, first, "")
	if !r.Equal(t0.Add(6*time.Hour)) || !est {
		t.Fatalf("first reading: %v %v", r, est)
	}
	first.Reset, first.ResetEstimated = r, est
	later := RateLimit{Limit: 100, Remaining: 90, Window: "21600", Updated: t0.Add(time.Hour)}
	if r, _ := resetOf(first, later, ""); !r.Equal(t0.Add(6 * time.Hour)) {
		t.Errorf("a later reading moved the reset to %v", r)
	}
	back := RateLimit{Limit: 100, Remaining: 100, Window: "21600", Updated: t0.Add(2 * time.Hour)}
	if r, _ := resetOf(first, back, ""); !r.Equal(t0.Add(8 * time.Hour)) {
		t.Errorf("the budget came back but the reset is %v", r)
	}
	if r, est := resetOf(first, later, "120"); !r.Equal(later.Updated.Add(2*time.Minute)) || est {
		t.Errorf("ratelimit-reset 120: %v %v", r, est)
	}
	if r, _ := resetOf(RateLimit{}, RateLimit{Limit: 5, Remaining: 1, Updated: t0}, ""); !r.IsZero() {
		t.Errorf("no window, no header: %v", r)
	}
}
