package admin

import (
	"context"
	"sync"
	"time"

	"github.com/regcache/regcache/internal/ui"
)

// The dashboard's history: one sample every historyEvery, the last 24 h.
const historySamples = 8640

// historyEvery is the sampling interval.
const historyEvery = 10 * time.Second

// maxChartPoints bounds the points of one chart series sent to the page:
// the 24 h view takes every 12th sample.
const maxChartPoints = 720

// sample is the counters and gauges at one instant; counters are
// cumulative, so any two samples give the rate between them.
type sample struct {
	t          time.Time
	results    [6]int64
	bytesCache int64 // served from the cache
	fetched    int64 // fetched from upstreams by fills
	cacheBytes int64
	maxBytes   int64
	remaining  []int32 // per upstream (Source.Upstreams' order); -1 unknown
}

// history is a ring of the last samples.
type history struct {
	mu   sync.Mutex
	ring []sample
	next int
	full bool
}

func newHistory(n int) *history { return &history{ring: make([]sample, n)} }

func (h *history) add(s sample) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	h.full = h.full || h.next == 0
}

// since returns the samples at or after from, oldest first.
func (h *history) since(from time.Time) []sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []sample
	n, start := h.next, 0
	if h.full {
		n, start = len(h.ring), h.next
	}
	for i := range n {
		s := h.ring[(start+i)%len(h.ring)]
		if !s.t.Before(from) {
			out = append(out, s)
		}
	}
	return out
}

// run samples at once and then every interval until ctx ends.
func (h *history) run(ctx context.Context, every time.Duration, take func() sample) {
	h.add(take())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.add(take())
		}
	}
}

// sample reads the counters and gauges now.
func (a *Admin) sample() sample {
	t := a.stats.totals()
	s := sample{t: time.Now(), results: t.Results, bytesCache: t.BytesCache,
		cacheBytes: a.src.Totals().Bytes(), maxBytes: a.src.MaxSize()}
	for _, n := range a.src.Fills().Totals().Fetched {
		s.fetched += n
	}
	for _, u := range a.src.Upstreams() {
		r := int32(-1)
		if rl := u.Client.RateLimit(); !rl.Updated.IsZero() {
			r = int32(rl.Remaining)
		}
		s.remaining = append(s.remaining, r)
	}
	return s
}

// chart turns the samples of the last span, and the live one, into the
// page's series: rates per second between points for counters, values for
// gauges.
func (a *Admin) chart(span time.Duration) *ui.History {
	now := a.sample()
	pts := append(a.history.since(now.t.Add(-span)), now)
	if stride := (len(pts) + maxChartPoints - 1) / maxChartPoints; stride > 1 {
		var thin []sample
		for i := len(pts) - 1; i >= 0; i -= stride { // keep the live point
			thin = append([]sample{pts[i]}, thin...)
		}
		pts = thin
	}
	var names []string
	for _, u := range a.src.Upstreams() {
		names = append(names, u.Name)
	}
	return series(pts, names, span)
}

// series is the charts of pts; names are the upstreams in the samples'
// order of remaining.
func series(pts []sample, names []string, span time.Duration) *ui.History {
	h := &ui.History{Span: span.String(), Step: historyEvery.Seconds(), Results: map[string][]float64{}, Remaining: map[string][]float64{}}
	for _, r := range results {
		h.Results[r] = []float64{}
	}
	for _, n := range names {
		h.Remaining[n] = []float64{}
	}
	for i, p := range pts {
		h.Times = append(h.Times, p.t.UnixMilli())
		h.CacheBytes = append(h.CacheBytes, float64(p.cacheBytes))
		h.MaxBytes = float64(p.maxBytes)
		for j, n := range names {
			v := -1.0
			if j < len(p.remaining) {
				v = float64(p.remaining[j])
			}
			h.Remaining[n] = append(h.Remaining[n], v)
		}
		prev := p // the first point has no rate yet
		if i > 0 {
			prev = pts[i-1]
		}
		rates(h, prev, p)
	}
	return h
}

// rates adds the counters' rates per second from prev to p (0 when p is
// prev: the first point).
func rates(h *ui.History, prev, p sample) {
	secs := p.t.Sub(prev.t).Seconds()
	if secs <= 0 {
		secs = 1
	}
	for k, r := range results {
		h.Results[r] = append(h.Results[r], float64(p.results[k]-prev.results[k])/secs)
	}
	h.BytesCache = append(h.BytesCache, float64(p.bytesCache-prev.bytesCache)/secs)
	h.BytesUpstream = append(h.BytesUpstream, float64(p.fetched-prev.fetched)/secs)
}
