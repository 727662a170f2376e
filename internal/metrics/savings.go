package metrics

import "github.com/prometheus/client_golang/prometheus"

// Savings are the counters of what the mirror saved, updated once per
// answered content request.
type Savings struct {
	Results     *prometheus.CounterVec // by result: hit, miss, stale, coalesced, denied, error
	ServedBytes *prometheus.CounterVec // by source: cache, upstream, coalesced
	PullsSaved  *prometheus.CounterVec // by upstream

	// The series of the closed label sets, looked up once: WithLabelValues
	// hashes and checks its values on every call, three times per answered
	// request (issue 28). Read-only after NewSavings.
	results, served, saved map[string]prometheus.Counter
}

// counter is vec's series for v: the one made at start, else looked up.
func counter(made map[string]prometheus.Counter, vec *prometheus.CounterVec, v string) prometheus.Counter {
	if c, ok := made[v]; ok {
		return c
	}
	return vec.WithLabelValues(v)
}

// Result is the series of regcache_request_results_total for result.
func (s *Savings) Result(result string) prometheus.Counter {
	return counter(s.results, s.Results, result)
}

// Served is the series of regcache_served_bytes_total for source.
func (s *Savings) Served(source string) prometheus.Counter {
	return counter(s.served, s.ServedBytes, source)
}

// Saved is the series of regcache_pulls_saved_total for upstream.
func (s *Savings) Saved(upstream string) prometheus.Counter {
	return counter(s.saved, s.PullsSaved, upstream)
}

// NewSavings creates the counters and registers them on reg. Every label
// value comes from a closed set: results, sources and upstreams (the
// configured upstreams' names), each series created at zero so rates and
// alerts see it from the first scrape.
func NewSavings(reg prometheus.Registerer, results, sources, upstreams []string) *Savings {
	s := &Savings{
		Results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regcache_request_results_total",
			Help: "Content requests (manifests, blobs, tags, referrers) by result: hit, miss, stale, coalesced (a miss that joined another request's fill), denied, error.",
		}, []string{"result"}),
		ServedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regcache_served_bytes_total",
			Help: "Bytes sent to clients by where they came from: cache (hits, stale answers), upstream (misses), coalesced (misses that joined another request's fill).",
		}, []string{"source"}),
		PullsSaved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regcache_pulls_saved_total",
			Help: "Clients' manifest GETs (the requests Docker Hub counts as pulls) that spent none upstream: net of the manifest GETs the mirror sent the upstream.",
		}, []string{"upstream"}),
	}
	s.results, s.served, s.saved = map[string]prometheus.Counter{}, map[string]prometheus.Counter{}, map[string]prometheus.Counter{}
	for _, r := range results {
		s.results[r] = s.Results.WithLabelValues(r)
	}
	for _, src := range sources {
		s.served[src] = s.ServedBytes.WithLabelValues(src)
	}
	for _, u := range upstreams {
		s.saved[u] = s.PullsSaved.WithLabelValues(u)
	}
	reg.MustRegister(s.Results, s.ServedBytes, s.PullsSaved)
	return s
}

// State is the gauges' values at scrape time.
type State struct {
	Upstreams         []UpstreamState
	FillBytesWritten  float64 // bytes written by the fills running
	FillBytesExpected float64 // the known sizes of the fills running
	FillReaders       float64 // clients reading fills
	FillsCommitted    float64
	FillsFailed       float64
	CacheBytes        float64
	CacheMaxBytes     float64 // 0: unlimited
}

// UpstreamState is one upstream's gauges.
type UpstreamState struct {
	Name string
	// State is one of UpstreamStates.
	State        string
	ResetSeconds float64 // until the rate-limit window resets; 0 when unknown
	Reserve      float64 // the headroom under which the dashboard warns
	FetchedBytes float64
}

// UpstreamStates is the closed set of regcache_upstream_state's state label.
var UpstreamStates = []string{"unknown", "up", "rate_limited", "breaker_open", "stale_serving", "credentials_rejected"}

// RegisterState registers the collectors read from fn at scrape time.
func RegisterState(reg prometheus.Registerer, fn func() State) {
	reg.MustRegister(&stateCollector{fn: fn})
}

var (
	descUpState     = prometheus.NewDesc("regcache_upstream_state", "1 for the upstream's current state: unknown (not probed yet), up, rate_limited (a 429 holds some kinds of request back), breaker_open (an endpoint family fails fast), stale_serving (unreachable: content is served from the cache), credentials_rejected (the upstream refuses the configured credentials).", []string{"upstream", "state"}, nil)
	descReset       = prometheus.NewDesc("regcache_upstream_ratelimit_reset_seconds", "Seconds until the upstream's rate-limit window gives the budget back (ratelimit-reset, else estimated from the window); 0 when unknown.", []string{"upstream"}, nil)
	descReserve     = prometheus.NewDesc("regcache_upstream_ratelimit_reserve", "Pulls of headroom under which the dashboard warns and the alert fires (a tenth of the limit).", []string{"upstream"}, nil)
	descFetched     = prometheus.NewDesc("regcache_upstream_fetched_bytes_total", "Blob bytes received from the upstream by fills (failed fills included).", []string{"upstream"}, nil)
	descFillWritten = prometheus.NewDesc("regcache_fill_bytes_written", "Bytes written so far by the fills running.", nil, nil)
	descFillSize    = prometheus.NewDesc("regcache_fill_bytes_expected", "Sum of the known sizes of the fills running.", nil, nil)
	descFillReaders = prometheus.NewDesc("regcache_fill_readers", "Clients reading the growing files of fills running.", nil, nil)
	descFills       = prometheus.NewDesc("regcache_fills_total", "Fills ended, by result: committed (verified and stored) or failed.", []string{"result"}, nil)
	descCacheBytes  = prometheus.NewDesc("regcache_cache_bytes", "Blob bytes in the store.", nil, nil)
	descCacheMax    = prometheus.NewDesc("regcache_cache_max_bytes", "storage.max_size in bytes; 0 is unlimited.", nil, nil)
)

type stateCollector struct{ fn func() State }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUpState, descReset, descReserve, descFetched, descFillWritten, descFillSize, descFillReaders, descFills, descCacheBytes, descCacheMax} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.fn()
	for _, u := range s.Upstreams {
		for _, st := range UpstreamStates {
			v := 0.0
			if st == u.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descUpState, prometheus.GaugeValue, v, u.Name, st)
		}
		ch <- prometheus.MustNewConstMetric(descReset, prometheus.GaugeValue, u.ResetSeconds, u.Name)
		ch <- prometheus.MustNewConstMetric(descReserve, prometheus.GaugeValue, u.Reserve, u.Name)
		ch <- prometheus.MustNewConstMetric(descFetched, prometheus.CounterValue, u.FetchedBytes, u.Name)
	}
	ch <- prometheus.MustNewConstMetric(descFillWritten, prometheus.GaugeValue, s.FillBytesWritten)
	ch <- prometheus.MustNewConstMetric(descFillSize, prometheus.GaugeValue, s.FillBytesExpected)
	ch <- prometheus.MustNewConstMetric(descFillReaders, prometheus.GaugeValue, s.FillReaders)
	ch <- prometheus.MustNewConstMetric(descFills, prometheus.CounterValue, s.FillsCommitted, "committed")
	ch <- prometheus.MustNewConstMetric(descFills, prometheus.CounterValue, s.FillsFailed, "failed")
	ch <- prometheus.MustNewConstMetric(descCacheBytes, prometheus.GaugeValue, s.CacheBytes)
	ch <- prometheus.MustNewConstMetric(descCacheMax, prometheus.GaugeValue, s.CacheMaxBytes)
}
