package mirror

import (
	"strconv"
	"time"
)

// Settings are the knobs the content service runs with, as it holds
// them: /status shows them, so what is in effect is read from the running
// part, not from the configuration it was built from.
type Settings struct {
	Freshness        time.Duration `json:"freshness"`
	NegativeTTL      time.Duration `json:"negativeTTL"`
	Prefetch         bool          `json:"prefetch"`
	PrefetchParallel int           `json:"prefetchParallel"`
	ReserveCount     int           `json:"reserveCount,omitempty"`
	ReservePercent   float64       `json:"reservePercent,omitempty"`
}

// Settings reports the service's knobs.
func (s *Service) Settings() Settings {
	return Settings{Freshness: s.freshness, NegativeTTL: s.negativeTTL, Prefetch: s.prefetch, PrefetchParallel: cap(s.prefetchSem),
		ReserveCount: s.reserveCount, ReservePercent: s.reservePercent}
}

// Options adds, by option key, what the content service and the upstream
// clients it holds run with: freshness, negative_ttl, prefetch,
// budget_reserve, the rules and the policy in effect, the seal and a
// sealed miss's status, the
// probe's interval and each upstream's bounds.
func (s *Service) Options(m map[string]string) {
	st := s.Settings()
	m["freshness"], m["negative_ttl"] = st.Freshness.String(), st.NegativeTTL.String()
	m["prefetch.enabled"], m["prefetch.parallel"] = strconv.FormatBool(st.Prefetch), strconv.Itoa(st.PrefetchParallel)
	m["budget_reserve"] = strconv.Itoa(st.ReserveCount)
	if st.ReserveCount == 0 {
		m["budget_reserve"] = strconv.FormatFloat(st.ReservePercent, 'f', -1, 64) + "%"
	}
	m["rules"] = strconv.Itoa(s.Rules().Len()) + " rules"
	m["policy"] = "none"
	if set := s.Policy(); set != nil {
		m["policy"] = set.Mode() + ", " + strconv.Itoa(len(set.Labels())-1) + " rules"
	}
	ups := Upstreams(s.upstreams)
	m["sealed"] = strconv.FormatBool(ups.AllSealed())
	if len(ups) > 0 {
		m["sealed_miss_status"] = strconv.Itoa(ups[0].Client.SealedMissStatus())
	}
	if len(ups) > 0 {
		m["probe_interval"] = ups[0].Client.Health().Probe.Interval.String()
	}
	for i, u := range ups {
		key := "upstreams[" + strconv.Itoa(i) + "]."
		if bw := u.Client.MaxBandwidth(); bw > 0 {
			m[key+"max_bandwidth"] = strconv.FormatInt(bw, 10)
		}
		if n := u.Client.MaxConnections(); n > 0 {
			m[key+"max_connections"] = strconv.Itoa(n)
		}
		m[key+"fill_connections"] = strconv.Itoa(u.Client.FillConnections())
	}
}
