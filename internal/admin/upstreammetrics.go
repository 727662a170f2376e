package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/metrics"
)

// registerUpstreams exports, for each upstream, what its client holds: its
// rate limit, whether it is limited or down, its breakers, and the
// requests a seal kept from it.
func (a *Admin) registerUpstreams() {
	for _, u := range a.src.Upstreams() {
		c := u.Client
		metrics.UpstreamGauges(a.d.Metrics, u.Name,
			func() float64 { return float64(c.RateLimit().Limit) },
			func() float64 { return float64(c.RateLimit().Remaining) },
			func() float64 {
				if h := c.Health(); h.Down || !h.LimitedUntil.IsZero() {
					return 1
				}
				return 0
			})
		metrics.BreakerGauges(a.d.Metrics, u.Name, func() []metrics.Breaker {
			var out []metrics.Breaker
			for _, b := range c.Health().Breakers {
				out = append(out, metrics.Breaker{Scope: b.Scope, Open: b.Open})
			}
			return out
		})
		a.d.Metrics.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_sealed_misses_total",
			Help: "Requests not sent to a sealed upstream (upstreams[].sealed, sealed): what the mirror would have fetched.", ConstLabels: prometheus.Labels{"upstream": u.Name}},
			func() float64 { _, n := c.SealedMisses(); return float64(n) }))
	}
}
