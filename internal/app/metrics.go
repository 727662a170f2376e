package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/regcache/regcache/internal/admin"
)

// registerMetrics exports what the app's parts hold: the Go runtime and
// the process, the cluster, the fills running, the scrub, eviction's
// pins, and the secrets refused (logins, the cluster's).
func (a *App) registerMetrics() {
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if a.cluster != nil {
		a.metrics.MustRegister(a.cluster.Collectors()...)
	}
	a.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_fills_active", Help: "Upstream blob fetches running."},
		func() float64 { return float64(a.fills.Active()) }))
	a.metrics.MustRegister(a.scrub.Collectors()...)
	a.metrics.MustRegister(a.evictor.Collectors()...)
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
