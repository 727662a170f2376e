// Package metrics defines regcache's Prometheus collectors. They are
// registered on a prometheus.Registerer the caller hands in, so every test
// gets its own registry.
package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collectors the registry API updates.
type Metrics struct {
	Requests *prometheus.CounterVec // by kind, method, cache result, status class
	Stale    *prometheus.CounterVec // stale answers by upstream

	// PolicyDecisions counts pull policy decisions by decision and rule.
	PolicyDecisions *prometheus.CounterVec
	Bytes           *prometheus.CounterVec // response bytes by cache result
	// ReserveRefusals counts background pulls refused to keep the
	// budget_reserve, by upstream.
	ReserveRefusals *prometheus.CounterVec
	// Fallbacks counts requests answered (or not) by a fallback member,
	// by upstream, member, kind (manifest, tag, blob) and result (served,
	// failed).
	Fallbacks *prometheus.CounterVec
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
	m.ReserveRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcache_budget_reserve_refusals_total", Help: "Background pulls (regcache warm) refused with 429 to keep the upstream's last budget_reserve counted pulls for other clients.",
	}, []string{"upstream"})
	m.Fallbacks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcache_fallback_requests_total", Help: "Requests tried on a fallback member because the upstream was down, 5xx or rate limited; kind is manifest, tag or blob, result served or failed.",
	}, []string{"upstream", "member", "kind", "result"})
	m.PolicyDecisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "regcache_policy_decisions_total", Help: "Pull policy decisions by decision (allow, deny, would_deny in audit mode) and rule (rules[N] or default: an index, never free text).",
	}, []string{"decision", "rule"})
	reg.MustRegister(m.Requests, m.Stale, m.Bytes, m.ReserveRefusals, m.Fallbacks, m.PolicyDecisions)
	return m
}

// Code is the code label of Requests for an HTTP status: for the codes
// 100-599 a string made once, not one strconv.Itoa allocation per answered
// request (issue 28).
func Code(status int) string {
	if status >= 100 && status < len(codes) {
		return codes[status]
	}
	return strconv.Itoa(status)
}

var codes = func() (c [600]string) {
	for i := 100; i < len(c); i++ {
		c[i] = strconv.Itoa(i)
	}
	return c
}()

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

// Breaker is one circuit breaker's state as the breaker gauge reports it.
type Breaker struct {
	Scope string
	Open  bool
}

// BreakerGauges registers regcache_upstream_breaker_open{scope}, read from
// fn at scrape time. The upstream client bounds the scopes (a few endpoint
// families and at most 17 CDN hosts), so the label set stays small.
func BreakerGauges(reg prometheus.Registerer, upstream string, fn func() []Breaker) {
	reg.MustRegister(&breakerCollector{upstream: upstream, fn: fn,
		desc: prometheus.NewDesc("regcache_upstream_breaker_open", "1 while the circuit breaker of an upstream endpoint family (manifests, blobs, token, cdn <host>) is open.",
			[]string{"scope"}, prometheus.Labels{"upstream": upstream})})
}

type breakerCollector struct {
	upstream string
	fn       func() []Breaker
	desc     *prometheus.Desc
}

func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.fn() {
		v := 0.0
		if b.Open {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, b.Scope)
	}
}
