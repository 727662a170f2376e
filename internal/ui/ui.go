// Package ui serves regcache's dashboard: one server-rendered HTML page on
// the admin listener showing each upstream's state and rate limit, the fills
// running and the cache's size. It has no JavaScript and loads nothing from
// elsewhere, so it works on an air-gapped host and behind a strict proxy; it
// refreshes itself with a meta tag.
//
// The page only renders a Snapshot; what goes into one (and how often the
// index is read for it) is the caller's business. A Snapshot carries no
// credentials, and html/template escapes everything in it.
package ui

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

//go:embed templates/*.html
var templates embed.FS

var page = template.Must(template.New("dashboard.html").Funcs(template.FuncMap{
	"bytes": formatBytes,
	"ago":   ago,
}).ParseFS(templates, "templates/dashboard.html"))

// Snapshot is everything the page shows.
type Snapshot struct {
	Upstreams   []Upstream
	ActiveFills int
	Cache       Cache
	Time        time.Time // when the snapshot was taken
}

// Upstream is one upstream's state. URL must not carry userinfo.
type Upstream struct {
	Name          string
	URL           string
	RateLimit     RateLimit
	Health        Health
	TokenRequests int64
}

// RateLimit is the upstream's last reported pull limit.
type RateLimit struct {
	Limit     int
	Remaining int
	Window    string // seconds, as the upstream says it
	Source    string // the address the upstream counts against
	Updated   time.Time
}

// Health is whether the upstream is held down, and until when a 429
// keeps it from being asked.
type Health struct {
	Down         bool
	LimitedUntil time.Time
	LimitedKinds []string  // the kinds of request a 429 holds back (manifest GET, blob, ...)
	Breakers     []Breaker // open circuit breakers, by scope
}

// Breaker is one open circuit breaker of an upstream: the endpoint family
// (manifests, blobs, token, a CDN host) that fails fast until a probe
// succeeds.
type Breaker struct {
	Scope     string
	LastError string
	Since     time.Time
	NextProbe time.Time
}

// Source gives the dashboard what it shows. The app hands one in; it must
// be cheap to call (cache anything that reads the index).
type Source interface {
	Snapshot(ctx context.Context) Snapshot
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) Snapshot

// Snapshot calls f.
func (f SourceFunc) Snapshot(ctx context.Context) Snapshot { return f(ctx) }

// Cache is the cache's size, as of Counted.
type Cache struct {
	Blobs   int
	Bytes   int64
	Tags    int
	Counted time.Time     // when the index was last counted; zero if never
	Err     error         // why the counts are missing or old, if they are
	MaxSize int64         // storage.max_size; 0 is unlimited
	MaxAge  time.Duration // storage.max_age; 0 is none
}

// Dashboard is the dashboard's HTTP handler.
type Dashboard struct {
	src     Source
	refresh time.Duration
	log     *slog.Logger
}

var _ http.Handler = (*Dashboard)(nil)

// Option configures a Dashboard.
type Option func(*Dashboard)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(d *Dashboard) { d.log = l } }

// WithRefresh sets how often the browser reloads the page (default 10s; 0
// turns it off).
func WithRefresh(every time.Duration) Option { return func(d *Dashboard) { d.refresh = every } }

// New returns the dashboard; src is asked once per request.
func New(src Source, opts ...Option) *Dashboard {
	d := &Dashboard{src: src, refresh: 10 * time.Second, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(d)
	}
	return d
}

// view is what the template executes on.
type view struct {
	Snapshot
	Refresh   int // seconds; 0 for none
	Upstreams []upstreamView
}

type upstreamView struct {
	Upstream
	State      string // up, down, limited
	StateText  string
	LimitText  string
	Remaining  string
	Source     string
	LimitAsked time.Time
}

// ServeHTTP renders the page. The whole page is rendered before the first
// byte is written, so a template error is a 500, not half a page.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := d.src.Snapshot(r.Context())
	v := view{Snapshot: s, Refresh: int(d.refresh / time.Second)}
	for _, u := range s.Upstreams {
		v.Upstreams = append(v.Upstreams, describe(u, s.Time))
	}
	var buf bytes.Buffer
	if err := page.Execute(&buf, v); err != nil {
		d.log.Error("render dashboard", slog.Any("error", err))
		http.Error(w, "dashboard failed to render", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	// Inline styles only: no scripts, no frames, nothing fetched.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
}

// describe words an upstream's state as `regcache status` does.
func describe(u Upstream, now time.Time) upstreamView {
	v := upstreamView{Upstream: u, State: "up", StateText: "up", LimitText: "-", Remaining: "-", Source: "-"}
	switch {
	case u.Health.Down:
		v.State, v.StateText = "down", "down (serving from cache)"
	case len(u.Health.Breakers) > 0:
		v.State, v.StateText = "limited", "up, some endpoints failing fast"
	case !u.Health.LimitedUntil.IsZero():
		v.State = "limited"
		v.StateText = "rate-limited until " + u.Health.LimitedUntil.UTC().Format("2006-01-02 15:04:05 UTC")
		if left := u.Health.LimitedUntil.Sub(now); left > 0 {
			v.StateText += " (" + left.Round(time.Second).String() + ")"
		}
		if len(u.Health.LimitedKinds) > 0 {
			v.StateText += " for " + strings.Join(u.Health.LimitedKinds, ", ")
		}
	}
	if rl := u.RateLimit; !rl.Updated.IsZero() {
		v.LimitText = strconv.Itoa(rl.Limit)
		if rl.Window != "" {
			v.LimitText += " per " + rl.Window + "s"
		}
		v.Remaining = strconv.Itoa(rl.Remaining)
		v.LimitAsked = rl.Updated
	}
	if u.RateLimit.Source != "" {
		v.Source = u.RateLimit.Source
	}
	return v
}

// formatBytes is n in binary units, as storage.max_size is usually written.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ago is how long before now t was, to the second.
func ago(now, t time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

// UsedPercent is Bytes as a share of MaxSize ("" without a limit).
func (c Cache) UsedPercent() string {
	if c.MaxSize <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f%%", 100*float64(c.Bytes)/float64(c.MaxSize))
}
