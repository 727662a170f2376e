package app

import (
	"strconv"
	"strings"

	"github.com/regcache/regcache/internal/blobstore/s3"
)

// settingsInEffect is, by option key, the value each running part of the
// mirror holds (the content service and its upstream clients, the fills,
// access, the scrub, eviction, the store, the cluster), each part
// reporting its own keys (Options) and not the configuration: /status
// shows it, so an option parsed but never handed over shows its default
// there. Secrets are left out; options proven by what the mirror does
// (addresses, TLS, S3, Redis, logging) are not repeated.
func (a *App) settingsInEffect() map[string]string {
	m := map[string]string{"shutdown_timeout": a.config().ShutdownTimeout.String()} // the app's own
	a.content.Options(m)
	a.fills.Options(m)
	a.access.Options(m)
	a.scrub.Options(m)
	a.evictor.Options(m)
	var expected []string
	for _, p := range a.fleet.Expected() {
		expected = append(expected, p.String())
	}
	m["fleet.expected"] = strings.Join(expected, ",")
	if f := a.config().PolicyFile; f != "" {
		m["policy_file"] = f
	}
	if s, ok := a.store.(*s3.Store); ok {
		m["storage.local_cache_size"] = strconv.FormatInt(s.LocalTierSize(), 10)
	}
	if a.cluster != nil {
		m["cluster.advertise"] = a.cluster.Self()
	}
	if a.certs != nil {
		m["tls.cert"] = a.certs.CertFile()
	}
	return m
}
