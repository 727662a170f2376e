package admin

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// degradedCollector is regcache_degraded: 1 for each reason the mirror is
// degraded for now, 0 for the others, judged at scrape time.
type degradedCollector struct {
	a    *Admin
	desc *prometheus.Desc
}

func newDegradedCollector(a *Admin) *degradedCollector {
	return &degradedCollector{a: a, desc: prometheus.NewDesc("regcache_degraded",
		"1 while the mirror is degraded for the reason: credentials_rejected, disk_full, cap_unreachable, empty_cache_upstream_down and not_writable (pulls fail or go around the mirror; /readyz answers 503 for the first four), upstream_unreachable, breaker_open, rate_limited.",
		[]string{"reason"}, nil)}
}

func (c *degradedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *degradedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.a.status()
	var now []string
	for _, p := range c.a.problems(st) {
		now = append(now, p.reason)
	}
	for _, r := range degradedReasons {
		v := 0.0
		if slices.Contains(now, r) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, r)
	}
}
