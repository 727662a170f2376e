package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/metrics"
)

// registerMetrics exports what the app's parts hold: the Go runtime and
// the process, the upstreams' rate limits and breakers, the fills
// running, the scrub, and the secrets refused (logins, the cluster's).
func (a *App) registerMetrics() {
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.registerUpstreamMetrics()
	if a.cluster != nil {
		a.metrics.MustRegister(clusterMetrics(a.cluster)...)
	}
	a.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_fills_active", Help: "Upstream blob fetches running."},
		func() float64 { return float64(a.fills.Active()) }))
	a.metrics.MustRegister(a.scrub.Collectors()...)
	a.metrics.MustRegister(a.evictor.Collectors()...)
	a.registerSealedMetrics()
	acc := a.access
	a.metrics.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_login_failures_total", Help: "Client logins refused for wrong credentials."},
			func() float64 { f, _ := acc.LoginFailures(); return float64(f) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "regcache_login_throttled_total", Help: "Client login attempts refused unchecked: their address failed too many logins lately."},
			func() float64 { _, th := acc.LoginFailures(); return float64(th) }))
	if c := a.cluster; c != nil { // the admin listener's are the admin surface's
		a.metrics.MustRegister(
			prometheus.NewCounterFunc(admin.AuthFailuresOpts("cluster"), func() float64 { f, _ := c.AuthFailures(); return float64(f) }),
			prometheus.NewCounterFunc(admin.AuthThrottledOpts("cluster"), func() float64 { _, th := c.AuthFailures(); return float64(th) }))
	}
}

// registerUpstreamMetrics exports each upstream's rate limit, whether it
// is limited or down, and its breakers.
func (a *App) registerUpstreamMetrics() {
	for _, u := range a.upstreams {
		c := u.Client
		metrics.UpstreamGauges(a.metrics, u.Name,
			func() float64 { return float64(c.RateLimit().Limit) },
			func() float64 { return float64(c.RateLimit().Remaining) },
			func() float64 {
				if h := c.Health(); h.Down || !h.LimitedUntil.IsZero() {
					return 1
				}
				return 0
			})
		metrics.BreakerGauges(a.metrics, u.Name, func() []metrics.Breaker {
			var out []metrics.Breaker
			for _, b := range c.Health().Breakers {
				out = append(out, metrics.Breaker{Scope: b.Scope, Open: b.Open})
			}
			return out
		})
	}
}
