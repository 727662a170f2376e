package cluster

import "github.com/prometheus/client_golang/prometheus"

// Collectors export this replica's view of the cluster.
func (cl *Cluster) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_cluster_replicas_live",
			Help: "Replicas this one takes as live (itself included): heartbeating and not suspected."},
			func() float64 { return float64(cl.View().Live) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_cluster_membership_trusted",
			Help: "1 when the live set was read from Redis at the last heartbeat; 0 while Redis is away (the last set read is kept)."},
			func() float64 {
				if cl.View().Trusted {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "regcache_cluster_leases_held",
			Help: "Redis leases held by this replica's fills and locks."},
			func() float64 { return float64(cl.View().Leases) }),
	}
}
