// Package ui serves regcache's dashboard on the admin listener: one page
// whose script asks GET /dashboard.json every two seconds and draws the
// cards, the charts (plain SVG), the fills, the top repositories and the
// last errors from it. Everything it needs is embedded in the binary and
// it loads nothing from elsewhere, so it works on an air-gapped host and
// behind a strict proxy; the Content-Security-Policy allows only its own
// script, style and JSON.
//
// The page only shows a Snapshot; what goes into one (and who may see
// which repository names) is the Source's business. A Snapshot carries no
// credentials, and the script writes every value as text, never as markup.
package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

// Snapshot is everything the page shows.
type Snapshot struct {
	Time     time.Time `json:"time"` // when the snapshot was taken
	Started  time.Time `json:"started"`
	State    string    `json:"state"` // healthy, degraded
	Degraded []string  `json:"degraded"`
	Totals   Totals    `json:"totals"`

	Upstreams   []Upstream `json:"upstreams"`
	ActiveFills int        `json:"activeFills"`
	Fills       []Fill     `json:"fills"`
	Cache       Cache      `json:"cache"`
	TopPulls    []Repo     `json:"topPulls"`
	TopBytes    []Repo     `json:"topBytes"`
	Errors      []Event    `json:"errors"`
	// Private is set when the asker may see the repository names of
	// credentialed upstreams (the admin token, or loopback without one).
	Private bool     `json:"private"`
	History *History `json:"history,omitempty"`
	Fleet   Fleet    `json:"fleet"`
	// Policy is the pull policy's card; nil without a policy.
	Policy *Policy `json:"policy,omitempty"`
}

// Policy is the pull policy's card: its mode, its number of rules and the
// last denials (would-denies in audit mode), newest first; the denials
// name repositories and clients, so they are left out without Private.
type Policy struct {
	Mode    string   `json:"mode"`
	Rules   int      `json:"rules"`
	Denials []Denial `json:"denials"`
}

// Denial is one refused pull (or, in audit mode, one it would refuse).
type Denial struct {
	Time       time.Time `json:"time"`
	Decision   string    `json:"decision"` // deny, would_deny
	Upstream   string    `json:"upstream"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag,omitempty"`
	Digest     string    `json:"digest"`
	Rule       string    `json:"rule"`
	Reason     string    `json:"reason"`
	Client     string    `json:"client,omitempty"`
}

// Fleet is the nodes card: client addresses the mirror served in the last
// hour and day, those gone quiet (seen before, not in the last day), and
// the last canary arrival (regcache client ... status --verify).
type Fleet struct {
	LastHour int `json:"lastHour"`
	LastDay  int `json:"lastDay"`
	Quiet    int `json:"quiet"`
	// Expected is set when fleet.expected is; NeverSeen counts its
	// addresses the mirror never served.
	Expected   bool      `json:"expected"`
	NeverSeen  int       `json:"neverSeen"`
	Canary     string    `json:"canary,omitempty"` // the engine of the last arrival
	CanaryTime time.Time `json:"canaryTime,omitzero"`
}

// Totals are the requests served since start.
type Totals struct {
	ByResult          map[string]int64 `json:"byResult"`
	HitRatio          float64          `json:"hitRatio"`     // -1 before any request
	ByteHitRatio      float64          `json:"byteHitRatio"` // -1 before any byte
	PullsSaved        int64            `json:"pullsSaved"`
	BytesFromCache    int64            `json:"bytesFromCache"`
	BytesFromUpstream int64            `json:"bytesFromUpstream"`
	BytesCoalesced    int64            `json:"bytesCoalesced"`
	BytesFetched      int64            `json:"bytesFetched"`
	FillsCommitted    int64            `json:"fillsCommitted"`
	FillsFailed       int64            `json:"fillsFailed"`
}

// Upstream is one upstream's state. URL must not carry userinfo.
type Upstream struct {
	Name          string    `json:"name"`
	URL           string    `json:"url"`
	State         string    `json:"state"` // up, unknown, rate-limited, breaker-open, stale-serving, credentials-rejected
	StateText     string    `json:"stateText"`
	Reason        string    `json:"reason,omitempty"`
	Since         time.Time `json:"since,omitzero"`
	NextProbe     time.Time `json:"nextProbe,omitzero"`
	RateLimit     RateLimit `json:"rateLimit"`
	LimitedKinds  []string  `json:"limitedKinds,omitempty"`
	Breakers      []Breaker `json:"breakers,omitempty"` // open ones
	TokenRequests int64     `json:"tokenRequests"`
	PullsSaved    int64     `json:"pullsSaved"`
	FetchedBytes  int64     `json:"fetchedBytes"`
	// Sealed is set while the upstream is never contacted; SealedMisses
	// counts what a sealed upstream would have fetched.
	Sealed       bool  `json:"sealed,omitempty"`
	SealedMisses int64 `json:"sealedMisses,omitempty"`
	// Waiting counts the requests waiting for a connection (max_connections).
	Waiting int64 `json:"waiting,omitempty"`
}

// RateLimit is the upstream's last reported pull limit.
type RateLimit struct {
	Limit          int       `json:"limit"`
	Remaining      int       `json:"remaining"`
	Reserve        int       `json:"reserve"`          // headroom under which the card warns
	Window         string    `json:"window,omitempty"` // seconds, as the upstream says it
	Source         string    `json:"source,omitempty"` // the address the upstream counts against
	Updated        time.Time `json:"updated,omitzero"` // zero: never reported
	Reset          time.Time `json:"reset,omitzero"`
	ResetEstimated bool      `json:"resetEstimated,omitempty"`
}

// Breaker is one open circuit breaker of an upstream: the endpoint family
// (manifests, blobs, token, a CDN host) that fails fast until a probe
// succeeds.
type Breaker struct {
	Scope     string    `json:"scope"`
	LastError string    `json:"lastError,omitempty"`
	Since     time.Time `json:"since"`
	NextProbe time.Time `json:"nextProbe"`
}

// Fill is one running upstream fetch.
type Fill struct {
	Digest   string    `json:"digest"`
	Upstream string    `json:"upstream,omitempty"`
	Written  int64     `json:"written"`
	Size     int64     `json:"size"` // -1 until known
	Readers  int       `json:"readers"`
	Rate     float64   `json:"rate"` // bytes per second since it started
	Started  time.Time `json:"started"`
}

// Cache is the cache's size: Bytes live, Blobs and Tags as of Counted.
type Cache struct {
	Blobs   int           `json:"blobs"`
	Bytes   int64         `json:"bytes"`
	Tags    int           `json:"tags"`
	Counted time.Time     `json:"counted,omitzero"`  // when the index was last counted; zero if never
	Err     error         `json:"-"`                 // why the counts are missing or old, if they are
	MaxSize int64         `json:"maxSize"`           // storage.max_size; 0 is unlimited
	MaxAge  time.Duration `json:"-"`                 // storage.max_age; 0 is none
	Scrub   string        `json:"scrub,omitempty"`   // the background scrub, in words
	Pinned  int64         `json:"pinned,omitempty"`  // bytes of images rules pin (never evicted)
	Cluster string        `json:"cluster,omitempty"` // the replica's view of its cluster, in words
}

// Repo is one repository in a top list. Name is empty when the asker may
// not see it (a credentialed upstream's repository, asked without the
// admin token).
type Repo struct {
	Upstream string `json:"upstream"`
	Name     string `json:"name"`
	Count    int64  `json:"count"`
}

// Event is one failed, refused or stale answer. Repo and Reason are empty
// when the asker may not see them.
type Event struct {
	Time     time.Time `json:"time"`
	Result   string    `json:"result"` // error, denied, stale
	Upstream string    `json:"upstream,omitempty"`
	Repo     string    `json:"repo,omitempty"`
	Kind     string    `json:"kind,omitempty"`
	Status   int       `json:"status"`
	Code     string    `json:"code,omitempty"`
	Reason   string    `json:"reason,omitempty"`
}

// History is the charts' series over Span: Times in Unix milliseconds,
// counters as rates per second between points, gauges as values.
// Remaining is -1 where the upstream had not reported a limit.
type History struct {
	Span          string               `json:"span"`
	Step          float64              `json:"step"` // seconds between samples
	Times         []int64              `json:"times"`
	Results       map[string][]float64 `json:"results"`
	BytesCache    []float64            `json:"bytesCache"`
	BytesUpstream []float64            `json:"bytesUpstream"`
	CacheBytes    []float64            `json:"cacheBytes"`
	MaxBytes      float64              `json:"maxBytes"`
	Remaining     map[string][]float64 `json:"remaining"`
}

// Source gives the dashboard what it shows: r is the page's request (for
// the Source to decide what the asker may see), span the charts' reach.
// It must be cheap to call: the page asks every two seconds.
type Source interface {
	Snapshot(r *http.Request, span time.Duration) Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func(r *http.Request, span time.Duration) Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot(r *http.Request, span time.Duration) Snapshot { return f(r, span) }

// Paths the dashboard answers; the caller routes them to it.
const (
	PathPage   = "/"
	PathData   = "/dashboard.json"
	PathAssets = "/dashboard/" // the script and the style sheet
)

// Spans the charts offer.
var spans = map[string]time.Duration{"1h": time.Hour, "24h": 24 * time.Hour}

// Dashboard is the dashboard's HTTP handler.
type Dashboard struct {
	src Source
	log *slog.Logger
}

var _ http.Handler = (*Dashboard)(nil)

// Option configures a Dashboard.
type Option func(*Dashboard)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(d *Dashboard) { d.log = l } }

// New returns the dashboard; src is asked once per data request.
func New(src Source, opts ...Option) *Dashboard {
	d := &Dashboard{src: src, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(d)
	}
	return d
}

// ServeHTTP answers the page, its assets and its data.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	switch p := r.URL.Path; {
	case p == PathPage:
		d.asset(w, r, "index.html")
	case p == PathData:
		d.data(w, r)
	case len(p) > len(PathAssets) && p[:len(PathAssets)] == PathAssets:
		d.asset(w, r, path.Base(p))
	default:
		http.NotFound(w, r)
	}
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

func (d *Dashboard) asset(w http.ResponseWriter, r *http.Request, name string) {
	ct, ok := contentTypes[path.Ext(name)]
	b, err := assets.ReadFile("assets/" + name)
	if !ok || err != nil {
		http.NotFound(w, r)
		return
	}
	d.write(w, r, ct, b)
}

// data answers the snapshot as JSON; ?span=1h (default) or 24h.
func (d *Dashboard) data(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("span")
	if name == "" {
		name = "1h"
	}
	span, ok := spans[name]
	if !ok {
		http.Error(w, fmt.Sprintf("span %q: use 1h or 24h", name), http.StatusBadRequest)
		return
	}
	s := d.src.Snapshot(r, span)
	b, err := json.Marshal(wire{Snapshot: s, CacheError: errText(s.Cache.Err), MaxAge: durText(s.Cache.MaxAge)})
	if err != nil {
		d.log.Error("encode dashboard data", slog.Any("error", err))
		http.Error(w, "dashboard data failed to encode", http.StatusInternalServerError)
		return
	}
	d.write(w, r, "application/json", b)
}

// wire is a Snapshot with what does not marshal by itself.
type wire struct {
	Snapshot
	CacheError string `json:"cacheError,omitempty"`
	MaxAge     string `json:"maxAge,omitempty"`
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func durText(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

func (d *Dashboard) write(w http.ResponseWriter, r *http.Request, ct string, b []byte) {
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = bytes.NewReader(b).WriteTo(w)
}
