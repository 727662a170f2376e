// Package metrics defines regcache's Prometheus collectors. They are
// registered on a prometheus.Registerer the caller hands in, so every test
// gets its own registry.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the collectors the registry API updates.
type Metrics struct {
	Requests *prometheus.CounterVec // by kind, method, cache result, status class
	Stale    *prometheus.CounterVec // stale answers by upstream
	Bytes    *prometheus.CounterVec // response bytes by cache result
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regcache_requests_total", Help: "Registry API requests by kind, method, cache result (hit, miss, stale, revalidated) and status code.",
		}, []string{"kind", "method", "cache", "code"}),
		Stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regcache_stale_responses_total", Help: "Answers served from cache because the upstream failed.",
		}, []string{"upstream"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "regcache_response_bytes_total", Help: "Bytes sent to clients by cache result.",
		}, []string{"cache"}),
	}
	reg.MustRegister(m.Requests, m.Stale, m.Bytes)
	return m
}

// UpstreamGauges registers gauges read from fn at scrape time: the
// upstream's last reported rate limit and whether it is marked down.
func UpstreamGauges(reg prometheus.Registerer, upstream string, limit, remaining, down func() float64) {
	labels := prometheus.Labels{"upstream": upstream}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_upstream_ratelimit_limit", Help: "The upstream's pull limit (ratelimit-limit).", ConstLabels: labels}, limit),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_upstream_ratelimit_remaining", Help: "Pulls left at the upstream (ratelimit-remaining).", ConstLabels: labels}, remaining),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_upstream_down", Help: "1 while the circuit breaker holds the upstream down or a 429 Retry-After runs.", ConstLabels: labels}, down),
	)
}
