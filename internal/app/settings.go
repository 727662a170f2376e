package app

import (
	"strconv"
	"strings"

	"github.com/regcache/regcache/internal/blobstore/s3"
)

// settingsInEffect is, by option key, the value each running part of the
// mirror holds (the content service, the fills, access, the scrub,
// eviction, the upstream clients, the store, the cluster), read from that
// part and not from the configuration: /status shows it, so an option
// parsed but never handed over shows its default there. Secrets are left
// out; options proven by what the mirror does (addresses, TLS, S3,
// Redis, logging) are not repeated.
func (a *App) settingsInEffect() map[string]string {
	ms, fs, as, sp := a.content.Settings(), a.fills.Settings(), a.access.Settings(), a.scrub.Pace()
	cfg := a.config() // what the app reads itself, when it needs it
	m := map[string]string{
		"freshness":              ms.Freshness.String(),
		"negative_ttl":           ms.NegativeTTL.String(),
		"fill_timeout":           fs.Timeout.String(),
		"shutdown_timeout":       cfg.ShutdownTimeout.String(),
		"prefetch.enabled":       strconv.FormatBool(ms.Prefetch),
		"prefetch.parallel":      strconv.Itoa(ms.PrefetchParallel),
		"budget_reserve":         strconv.Itoa(ms.ReserveCount),
		"storage.max_size":       strconv.FormatInt(a.maxSize.Load(), 10),
		"storage.max_blob_size":  strconv.FormatInt(fs.MaxSize, 10),
		"storage.max_age":        cfg.Storage.MaxAge.String(),
		"storage.scrub_interval": sp.Interval.String(),
		"storage.scrub_rate":     strconv.FormatInt(sp.Rate, 10),
		"access.allow":           joinPrefixes(as.Allow),
		"access.trusted_proxies": joinPrefixes(as.TrustedProxies),
		"access.private":         as.Private,
		"access.htpasswd":        as.Htpasswd,
		"access.users":           strconv.Itoa(as.UsersWithPatterns) + " users with patterns",
		"rules":                  strconv.Itoa(a.ruleSet().Len()) + " rules",
		"sealed":                 strconv.FormatBool(a.allSealed()),
		"sealed_miss_status":     strconv.Itoa(a.sealedMissStatus()),
		"fleet.expected":         joinPrefixes(a.fleet.Expected()),
	}
	if ms.ReserveCount == 0 {
		m["budget_reserve"] = strconv.FormatFloat(ms.ReservePercent, 'f', -1, 64) + "%"
	}
	a.upstreamSettings(m)
	if s, ok := a.store.(*s3.Store); ok {
		m["storage.local_cache_size"] = strconv.FormatInt(s.LocalTierSize(), 10)
	}
	if a.cluster != nil {
		m["cluster.advertise"] = a.cluster.Self()
	}
	if a.certs != nil {
		m["tls.cert"] = a.certs.certFile
	}
	return m
}

// upstreamSettings adds what the upstream clients hold: the probe's
// interval and each one's bounds.
func (a *App) upstreamSettings(m map[string]string) {
	if len(a.upstreams) > 0 {
		m["probe_interval"] = a.upstreams[0].Client.Health().Probe.Interval.String()
	}
	for i, u := range a.upstreams {
		if bw := u.Client.MaxBandwidth(); bw > 0 {
			m["upstreams["+strconv.Itoa(i)+"].max_bandwidth"] = strconv.FormatInt(bw, 10)
		}
		if n := u.Client.MaxConnections(); n > 0 {
			m["upstreams["+strconv.Itoa(i)+"].max_connections"] = strconv.Itoa(n)
		}
	}
}

func joinPrefixes[T interface{ String() string }](ps []T) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}
