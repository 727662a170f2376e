// Package defaults holds regcache's default settings, once. The option
// table of internal/config writes them into --help and the Config it loads;
// the constructors of the packages that take them (mirror, fill) fall back
// to them, so a library default cannot drift from the command's. The README
// table is checked against the option table by a test.
package defaults

import "time"

const (
	// Addr is the listen address of the registry API.
	Addr = ":5000"
	// AdminAddr is the listen address of the admin listener.
	AdminAddr = "127.0.0.1:5001"
	// Data is the data directory.
	Data = "./data"
	// UpstreamURL is the default upstream: Docker Hub.
	UpstreamURL = "https://registry-1.docker.io"
	// Freshness is how long a fetched tag is answered without asking upstream.
	Freshness = time.Minute
	// NegativeTTL is how long an upstream's "not found" for a tag is
	// answered without asking again.
	NegativeTTL = 30 * time.Second
	// FillConnections is how many connections one fill of a large blob
	// uses by default (upstreams[].fill_connections): docs/benchmarks.md
	// has the measurement.
	FillConnections = 4
	// FillTimeout bounds a fill no client reads any more, and one that gets
	// no byte for that long.
	FillTimeout = 30 * time.Minute
	// ProbeInterval is how often an idle upstream is pinged (/v2/).
	ProbeInterval = 30 * time.Second
	// SealedMissStatus is the status of a miss on a sealed upstream.
	SealedMissStatus = 404
	// ShutdownTimeout bounds the drain on SIGTERM.
	ShutdownTimeout = 30 * time.Second
	// Prefetch turns background fetching of a pulled image's blobs on.
	Prefetch = true
	// PrefetchParallel is the number of concurrent prefetch fetches.
	PrefetchParallel = 16
	// BudgetReservePercent is the share of an upstream's last
	// ratelimit-limit that background work (prefetch, regcache warm) leaves
	// to other clients.
	BudgetReservePercent = 10
	// MaxSize is the cache cap: a share of the data directory's file
	// system, so a drop-in never fills its disk.
	MaxSize = "80%"
	// MaxBlobSize bounds a blob whose size nothing gives.
	MaxBlobSize int64 = 64 << 30
	// ScrubInterval is how long one background scrub pass over the whole
	// store takes at most; ScrubRate bounds its reads, in bytes per second.
	ScrubInterval       = 7 * 24 * time.Hour
	ScrubRate     int64 = 4 << 20
	// Private is the private-repository policy.
	Private = "deny"
	// LogLevel and LogFormat select the log output.
	LogLevel  = "info"
	LogFormat = "json"
)
