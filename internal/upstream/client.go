// Package upstream is regcache's client for the registries it mirrors:
// manifests, blobs, tags and referrers over the distribution API, with
// authentication (package auth), retries of idempotent requests, bounded
// reads of manifests and error bodies, and a record of the upstream's
// rate-limit headers.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/redact"
)

// Client talks to one upstream registry.
type Client struct {
	name     string
	base     *url.URL
	http     *http.Client
	auth     *auth.Transport
	log      *slog.Logger
	attempts int
	backoff  time.Duration

	now       func() time.Time
	breakers  *breakers
	limiter   limiter
	authOpts  []auth.Option
	bandwidth *rate.Limiter // max_bandwidth, shared by every request; nil is unlimited
	maxConns  int           // max_connections per host; 0 is unlimited
	fillConns int           // fill_connections: connections one fill of a large blob may use
	waiting   atomic.Int64  // requests waiting for a connection (under max_connections)

	mu        sync.Mutex
	rateLimit RateLimit

	baseTransport http.RoundTripper // under the breakers and auth: for probes
	probe         prober

	manifestGets atomic.Int64 // manifest GETs the registry answered 2xx: counted pulls
	sealed       sealedState  // upstreams[].sealed: nothing leaves, misses are listed
}

// Option configures a Client.
type Option func(*Client)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.log = l } }

// WithTransport replaces the base transport (default: timeouts on connect,
// TLS and headers; none on a flowing body).
func WithTransport(rt http.RoundTripper) Option {
	return func(c *Client) { c.http.Transport = rt }
}

// WithClock sets the time source of the circuit breaker and rate-limit
// backoff (tests).
func WithClock(now func() time.Time) Option { return func(c *Client) { c.now = now } }

// WithBreaker sets how many consecutive failures open a scope's circuit
// breaker, and the least time between two probes of an open one (default
// 5 and 1s). While a breaker is open, the first request after the interval
// is the probe; its success closes the breaker.
func WithBreaker(threshold int, probeInterval time.Duration) Option {
	return func(c *Client) {
		c.breakers.threshold, c.breakers.interval = max(threshold, 1), probeInterval
	}
}

// WithAuth passes options to the authenticating transport (a credential
// source that re-reads a password file, say).
func WithAuth(opts ...auth.Option) Option {
	return func(c *Client) { c.authOpts = append(c.authOpts, opts...) }
}

// WithRetry sets how many attempts an idempotent request gets and the first
// backoff (doubled each time). Default 3 attempts, 200ms.
func WithRetry(attempts int, backoff time.Duration) Option {
	return func(c *Client) { c.attempts, c.backoff = max(attempts, 1), backoff }
}

// DefaultTransport has timeouts on connecting, TLS and waiting for response
// headers, and none on reading a body: a large blob may flow for an hour.
func DefaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   64,
		ForceAttemptHTTP2:     true,
	}
}

// New returns a client for the upstream called name (the registry host
// clients know, e.g. docker.io) at rawURL (e.g. https://registry-1.docker.io).
func New(name, rawURL string, creds auth.Credentials, opts ...Option) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %s: invalid URL %q: want http(s)://host[:port]", name, redact.URL(rawURL))
	}
	u.Path, u.RawQuery, u.User = "", "", nil
	c := &Client{name: name, base: u, http: &http.Client{Transport: DefaultTransport(), CheckRedirect: checkRedirect},
		log: slog.New(slog.DiscardHandler), attempts: 3, backoff: 200 * time.Millisecond,
		now: time.Now, breakers: newBreakers(), fillConns: 1}
	for _, o := range opts {
		o(c)
	}
	probe := c.limitConnections()
	if c.bandwidth != nil { // under everything: every byte read from this upstream (and its CDN) passes it
		c.http.Transport = &limitedTransport{base: c.http.Transport, lim: c.bandwidth}
	}
	c.baseTransport = probe
	c.auth = auth.New(&scopedTransport{c: c, base: c.http.Transport}, u, creds, c.authOpts...)
	c.http.Transport = c.auth
	return c, nil
}

// Name is the upstream's registry name.
func (c *Client) Name() string { return c.name }

// URL is the upstream's base URL.
func (c *Client) URL() string { return c.base.String() }

// ManifestGets is how many manifest GETs the registry answered with 2xx:
// the requests a limit like Docker Hub's counts.
func (c *Client) ManifestGets() int64 { return c.manifestGets.Load() }

// TokenRequests is how many bearer tokens this client has fetched.
func (c *Client) TokenRequests() int64 { return c.auth.TokenRequests() }

// RateLimit is the upstream's last reported pull limit (Docker Hub's
// ratelimit-limit / ratelimit-remaining / docker-ratelimit-source).
type RateLimit struct {
	Limit     int       `json:"limit"`
	Remaining int       `json:"remaining"`
	Window    string    `json:"window,omitempty"`
	Source    string    `json:"source,omitempty"`
	Updated   time.Time `json:"updated"`
	// Reset is when the window's budget comes back: from a ratelimit-reset
	// header (seconds) when the upstream sends one, else estimated
	// (ResetEstimated) as the first reading of the current window plus
	// the window (Docker Hub's window rolls, so it is the latest reset).
	Reset          time.Time `json:"reset,omitzero"`
	ResetEstimated bool      `json:"resetEstimated,omitempty"`
}

// RateLimit returns the last recorded rate-limit state (zero if the
// upstream never sent one).
func (c *Client) RateLimit() RateLimit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rateLimit
}

func (c *Client) recordRateLimit(h http.Header) {
	lim, rem := h.Get("Ratelimit-Limit"), h.Get("Ratelimit-Remaining")
	if lim == "" && rem == "" {
		return
	}
	parse := func(s string) (int, string) {
		v, w, _ := strings.Cut(s, ";")
		n, _ := strconv.Atoi(strings.TrimSpace(v))
		return n, strings.TrimPrefix(strings.TrimSpace(w), "w=")
	}
	var rl RateLimit
	rl.Limit, rl.Window = parse(lim)
	rl.Remaining, _ = parse(rem)
	rl.Source = h.Get("Docker-Ratelimit-Source")
	rl.Updated = time.Now()
	c.mu.Lock()
	rl.Reset, rl.ResetEstimated = resetOf(c.rateLimit, rl, h.Get("Ratelimit-Reset"))
	c.rateLimit = rl
	c.mu.Unlock()
}

// maxRedirects bounds the redirects one request follows: a blob goes from
// the registry to its CDN once (twice at most behind a second CDN); more
// is a loop, an upstream fault that no retry fixes.
const maxRedirects = 5

// ErrTooManyRedirects ends a request that was redirected more than
// maxRedirects times. It is not temporary: the request is not retried,
// nor is a fill resumed, so one client request costs the upstream a
// bounded number of requests whatever its redirects.
var ErrTooManyRedirects = errors.New("upstream redirected too many times")

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w (%d, the last to %s)", ErrTooManyRedirects, len(via), req.URL.Host)
	}
	return nil
}

func (c *Client) endpoint(repo, kind, ref string) string {
	u := *c.base
	u.Path = "/v2/" + repo + "/" + kind + "/" + ref
	return u.String()
}

// do sends an idempotent request, retrying on connection errors and 5xx
// with backoff. A 2xx response is returned open; anything else becomes an
// *Error.
func (c *Client) do(ctx context.Context, kind, op string, build func() (*http.Request, error)) (*http.Response, error) {
	if c.Sealed() {
		return nil, c.refuse(op)
	}
	var last error
	wait := c.backoff
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			c.log.Debug("retrying upstream request", slog.String("upstream", c.name), slog.String("op", op), slog.Int("attempt", attempt), slog.Any("error", last))
			select {
			case <-ctx.Done():
				return nil, &Error{Upstream: c.name, Op: op, Err: ctx.Err()}
			case <-time.After(wait):
			}
			wait *= 2
		}
		if ra, err := c.limiter.allow(kind, c.now()); err != nil {
			return nil, &Error{Upstream: c.name, Op: op, Err: err, StatusCode: http.StatusTooManyRequests, RetryAfter: ra}
		}
		// The breakers see every request that goes out, in the transport.
		resp, err := c.attempt(ctx, op, build)
		switch {
		case err == nil:
			return resp, nil
		case ctx.Err() != nil: // the caller left
			return nil, err
		}
		last = err
		e := err.(*Error)
		if ra, limited := IsTooManyRequests(e); limited {
			c.rateLimited(kind, op, ra)
			return nil, last
		}
		if !e.Temporary() {
			return nil, last
		}
	}
	return nil, last
}

// attempt sends one request. A 2xx response is returned open; anything
// else is an *Error (a non-2xx status with its envelope read and closed).
func (c *Client) attempt(ctx context.Context, op string, build func() (*http.Request, error)) (*http.Response, error) {
	req, err := build()
	if err != nil {
		return nil, &Error{Upstream: c.name, Op: op, Err: err}
	}
	if c.maxConns > 0 {
		var done func()
		req, done = c.countWaiting(req)
		defer done()
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Upstream: c.name, Op: op, Err: cleanURLError(err)}
	}
	c.recordRateLimit(resp.Header)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	return nil, c.checkResponse(op, resp)
}

// countWaiting counts req among the requests waiting for a connection
// (max_connections), from when the transport looks for one until it has
// one; done ends the count if it never got one.
func (c *Client) countWaiting(req *http.Request) (traced *http.Request, done func()) {
	var mu sync.Mutex
	waiting := false
	set := func(w bool) {
		mu.Lock()
		defer mu.Unlock()
		if w != waiting {
			waiting = w
			if w {
				c.waiting.Add(1)
			} else {
				c.waiting.Add(-1)
			}
		}
	}
	trace := &httptrace.ClientTrace{GetConn: func(string) { set(true) }, GotConn: func(httptrace.GotConnInfo) { set(false) }}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace)), func() { set(false) }
}

func (c *Client) rateLimited(kind, op, retryAfter string) {
	d := c.limiter.limited(kind, c.now(), retryAfter)
	c.log.Warn("upstream answered 429; not sending this kind of request again before Retry-After (other kinds go on)",
		slog.String("upstream", c.name), slog.String("kind", kind), slog.String("op", op), slog.Duration("retry_after", d))
}

// Health is the upstream's availability as the client sees it.
type Health struct {
	// Down is set while a breaker of the registry itself (manifests,
	// blobs, token) is open; a dead CDN host alone does not make it down.
	Down bool `json:"down"`
	// LimitedUntil is the latest Retry-After of a 429 still running, of any
	// kind; Limited says which kinds of request it holds back.
	LimitedUntil time.Time    `json:"limitedUntil,omitzero"`
	Limited      []LimitState `json:"limited,omitempty"`
	// Breakers are the scopes that saw requests, open or not.
	Breakers []BreakerState `json:"breakers,omitempty"`
	// Probe is what the /v2/ probes (and requests answered) last said;
	// a failed probe sets Down too.
	Probe ProbeState `json:"probe"`
	// Waiting counts the requests waiting for a connection under
	// max_connections (fairly, first come first served).
	Waiting int64 `json:"waiting,omitempty"`
	// Credentials is what the upstream last said of the configured
	// credentials (never rejected for an anonymous upstream).
	Credentials auth.Verdict `json:"credentials,omitzero"`
	// Sealed is set while the upstream is sealed; SealedMisses are the
	// requests refused (what the mirror would have fetched), the most
	// asked first, SealedMissTotal how many in all.
	Sealed          bool   `json:"sealed,omitempty"`
	SealedMisses    []Miss `json:"sealedMisses,omitempty"`
	SealedMissTotal int64  `json:"sealedMissTotal,omitempty"`
}

// Health reports the breakers' states and until when a 429 keeps the
// upstream from being asked.
func (c *Client) Health() Health {
	h := Health{Limited: c.limiter.state(c.now()), Breakers: c.breakers.states(), Probe: c.probe.state(), Credentials: c.auth.Verdict(), Sealed: c.Sealed(), Waiting: c.waiting.Load()}
	h.SealedMisses, h.SealedMissTotal = c.SealedMisses()
	h.Down = h.Probe.State == ProbeDown
	for _, l := range h.Limited {
		if l.Until.After(h.LimitedUntil) {
			h.LimitedUntil = l.Until
		}
	}
	for _, b := range h.Breakers {
		if b.Open && !strings.HasPrefix(b.Scope, scopeCDN) {
			h.Down = true
		}
	}
	if hp := c.auth.Helper(); hp != nil {
		// The credential program has no breaker of its own: it runs again
		// no sooner than a few seconds after a failure. Shown as one, it
		// is the state and reason of /status and the dashboard.
		if st := hp.State(); st.LastError != "" {
			h.Breakers = append(h.Breakers, BreakerState{Scope: ScopeCredentials, Open: true, Failures: 1, LastError: st.LastError, Since: st.Since})
		}
	}
	return h
}

// cleanURLError drops the URL (which may carry a query with a token from a
// redirect) from a transport error, keeping its cause.
func cleanURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %s: %w", ue.Op, cleanURL(ue.URL), ue.Err)
	}
	return err
}

func cleanURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<url>"
	}
	u.RawQuery = ""
	return u.Redacted()
}

func newRequest(ctx context.Context, method, url string, accept []string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	if len(accept) > 0 {
		req.Header.Set("Accept", strings.Join(accept, ", "))
	}
	return req, nil
}

// Manifest is a manifest as the upstream served it.
type Manifest struct {
	Body      []byte
	MediaType string
	Digest    digest.Digest
}

// Descriptor is what a HEAD tells of a manifest or blob.
type Descriptor struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
}

// ManifestGet fetches a manifest by tag or digest, reading at most
// oci.MaxManifestSize bytes. The digest is computed from the bytes; a
// manifest fetched by digest must hash to it, and a Docker-Content-Digest
// header must agree with the body.
func (c *Client) ManifestGet(ctx context.Context, repo string, ref oci.Reference, accept []string) (*Manifest, error) {
	op := "GET manifest " + repo + ":" + ref.String()
	resp, err := c.do(ctx, KindManifestGet, op, func() (*http.Request, error) {
		return newRequest(ctx, http.MethodGet, c.endpoint(repo, "manifests", ref.String()), accept)
	})
	if err != nil {
		return nil, err
	}
	c.manifestGets.Add(1)
	defer resp.Body.Close()
	if resp.ContentLength > oci.MaxManifestSize {
		return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("manifest of %d bytes is larger than the %d-byte limit", resp.ContentLength, oci.MaxManifestSize)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, oci.MaxManifestSize+1))
	if err != nil {
		return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("read manifest: %w", err)}
	}
	if len(body) > oci.MaxManifestSize {
		return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("manifest is larger than the %d-byte limit", oci.MaxManifestSize)}
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("manifest body is %d bytes, Content-Length said %d", len(body), resp.ContentLength)}
	}
	m := &Manifest{Body: body, MediaType: resp.Header.Get("Content-Type"), Digest: digest.FromBytes(body)}
	want := ref.Digest
	if want == "" {
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			want, _ = digest.Parse(h)
		}
	}
	if want != "" {
		if !want.Algorithm().Available() || want.Algorithm().FromBytes(body) != want {
			return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("manifest body does not match digest %s", want)}
		}
		m.Digest = want
	}
	mt, err := manifestMediaType(m.MediaType, body)
	if err != nil {
		return nil, &Error{Upstream: c.name, Op: op, Err: err}
	}
	m.MediaType = mt
	return m, nil
}

// manifestMediaType is the media type a manifest is served with: the
// upstream's Content-Type when it is a manifest type (parameters dropped),
// else the body's own mediaType field, else what the body's shape says.
// Anything else (text/html with a matching digest, say) is refused: a
// mirror must not serve an upstream's page to a client's browser as a
// manifest.
func manifestMediaType(header string, body []byte) (string, error) {
	base, _, _ := strings.Cut(header, ";")
	base = strings.ToLower(strings.TrimSpace(base))
	if oci.IsManifestMediaType(base) {
		return base, nil
	}
	if mt, ok := oci.SniffManifest(body); ok {
		return mt, nil
	}
	return "", fmt.Errorf("the upstream sent Content-Type %q, which is not a manifest media type, and the body is not a manifest", truncate(header, 64))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ManifestHead asks for a manifest's descriptor without its body (a HEAD
// does not count against Docker Hub's pull limit).
func (c *Client) ManifestHead(ctx context.Context, repo string, ref oci.Reference, accept []string) (Descriptor, error) {
	op := "HEAD manifest " + repo + ":" + ref.String()
	resp, err := c.do(ctx, KindManifestHead, op, func() (*http.Request, error) {
		return newRequest(ctx, http.MethodHead, c.endpoint(repo, "manifests", ref.String()), accept)
	})
	if err != nil {
		return Descriptor{}, err
	}
	resp.Body.Close()
	d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest"))
	if err != nil {
		if ref.IsDigest() {
			d = ref.Digest
		} else {
			return Descriptor{}, &Error{Upstream: c.name, Op: op, Err: errors.New("response has no valid Docker-Content-Digest")}
		}
	}
	return Descriptor{MediaType: resp.Header.Get("Content-Type"), Digest: d, Size: resp.ContentLength}, nil
}

// Blob is an upstream blob body starting at Offset. Size is the blob's
// whole length when known, else -1.
type Blob struct {
	Body   io.ReadCloser
	Offset int64
	Size   int64
	// Upstream is the name of the upstream that served it.
	Upstream string
}

// BlobGet fetches a blob from offset. An upstream that ignores Range
// answers from byte 0, which Offset reports; the caller skips what it has.
// Redirects to another host (a CDN) are followed without Authorization.
func (c *Client) BlobGet(ctx context.Context, repo string, d digest.Digest, offset int64) (*Blob, error) {
	op := "GET blob " + repo + "@" + d.String()
	resp, err := c.do(ctx, KindBlob, op, func() (*http.Request, error) {
		req, err := newRequest(ctx, http.MethodGet, c.endpoint(repo, "blobs", d.String()), nil)
		if err == nil && offset > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		}
		return req, err
	})
	if err != nil {
		return nil, err
	}
	b := &Blob{Body: resp.Body, Size: resp.ContentLength, Upstream: c.name}
	if resp.StatusCode == http.StatusPartialContent {
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			resp.Body.Close()
			return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("unexpected Content-Range %q for offset %d", resp.Header.Get("Content-Range"), offset)}
		}
		b.Offset, b.Size = start, total
	}
	return b, nil
}

// ErrRangeIgnored: the upstream answered a range request with the whole
// blob (200). BlobSegment returns it, with the body closed.
var ErrRangeIgnored = errors.New("the upstream answered a range request with the whole blob")

// BlobSegment fetches bytes [start, start+length) of a blob, one segment of
// a fill over several connections, as a closed range: the body holds at
// most length bytes, and Size is the blob's whole length from
// Content-Range. An upstream that ignores Range gets ErrRangeIgnored, so
// nothing of a 200 is taken for a segment.
func (c *Client) BlobSegment(ctx context.Context, repo string, d digest.Digest, start, length int64) (*Blob, error) {
	op := fmt.Sprintf("GET blob %s@%s bytes %d-%d", repo, d, start, start+length-1)
	resp, err := c.do(ctx, KindBlob, op, func() (*http.Request, error) {
		req, err := newRequest(ctx, http.MethodGet, c.endpoint(repo, "blobs", d.String()), nil)
		if err == nil {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, start+length-1))
		}
		return req, err
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("upstream %s: %s: %w", c.name, op, ErrRangeIgnored)
	}
	got, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || got != start {
		resp.Body.Close()
		return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("unexpected Content-Range %q for a range from %d", resp.Header.Get("Content-Range"), start)}
	}
	body := struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, length), resp.Body}
	return &Blob{Body: body, Offset: start, Size: total, Upstream: c.name}, nil
}

// BlobRange fetches length bytes of a blob from start, as a range of its
// own (a lazy-pulling client's chunk, passed through, not stored). The
// body is cut at length bytes; an upstream that ignores Range answers from
// byte 0, and the bytes before start are skipped. Nothing here can verify
// a part of a blob: the client checks its chunks against digests of its
// own (eStargz, SOCI and zstd:chunked tables of contents).
func (c *Client) BlobRange(ctx context.Context, repo string, d digest.Digest, start, length int64) (io.ReadCloser, error) {
	op := fmt.Sprintf("GET blob %s@%s bytes %d-%d", repo, d, start, start+length-1)
	resp, err := c.do(ctx, KindBlob, op, func() (*http.Request, error) {
		req, err := newRequest(ctx, http.MethodGet, c.endpoint(repo, "blobs", d.String()), nil)
		if err == nil {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", start, start+length-1))
		}
		return req, err
	})
	if err != nil {
		return nil, err
	}
	var skip int64
	if resp.StatusCode == http.StatusPartialContent {
		got, _, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || got > start {
			resp.Body.Close()
			return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("unexpected Content-Range %q for a range from %d", resp.Header.Get("Content-Range"), start)}
		}
		skip = start - got
	} else {
		skip = start
	}
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			resp.Body.Close()
			return nil, &Error{Upstream: c.name, Op: op, Err: fmt.Errorf("skip to byte %d: %w", start, err)}
		}
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(resp.Body, length), resp.Body}, nil
}

// parseContentRange parses "bytes start-end/total"; total may be "*" (-1).
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// BlobHead returns a blob's size as the upstream reports it.
func (c *Client) BlobHead(ctx context.Context, repo string, d digest.Digest) (int64, error) {
	op := "HEAD blob " + repo + "@" + d.String()
	resp, err := c.do(ctx, KindBlob, op, func() (*http.Request, error) {
		return newRequest(ctx, http.MethodHead, c.endpoint(repo, "blobs", d.String()), nil)
	})
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// Listing is a bounded JSON answer passed through (tags, referrers).
type Listing struct {
	Body        []byte
	ContentType string
	Link        string
}

// maxListing caps a tags or referrers answer.
const maxListing = 4 << 20

// Tags lists a repository's tags; rawQuery (n, last) is passed on.
func (c *Client) Tags(ctx context.Context, repo, rawQuery string) (*Listing, error) {
	return c.listing(ctx, "GET tags "+repo, c.endpoint(repo, "tags", "list"), rawQuery)
}

// Referrers lists the referrers of a manifest; rawQuery (artifactType) is
// passed on.
func (c *Client) Referrers(ctx context.Context, repo string, d digest.Digest, rawQuery string) (*Listing, error) {
	return c.listing(ctx, "GET referrers "+repo+"@"+d.String(), c.endpoint(repo, "referrers", d.String()), rawQuery)
}

func (c *Client) listing(ctx context.Context, op, endpoint, rawQuery string) (*Listing, error) {
	if rawQuery != "" {
		endpoint += "?" + rawQuery
	}
	resp, err := c.do(ctx, KindList, op, func() (*http.Request, error) {
		return newRequest(ctx, http.MethodGet, endpoint, []string{"application/json", oci.MediaTypeOCIIndex})
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxListing+1))
	if err != nil {
		return nil, &Error{Upstream: c.name, Op: op, Err: err}
	}
	if len(body) > maxListing {
		return nil, &Error{Upstream: c.name, Op: op, Err: errors.New("answer larger than 4 MiB")}
	}
	return &Listing{Body: body, ContentType: resp.Header.Get("Content-Type"), Link: resp.Header.Get("Link")}, nil
}

// Ping asks the upstream's /v2/ (authenticating if challenged).
func (c *Client) Ping(ctx context.Context) error {
	u := *c.base
	u.Path = "/v2/"
	resp, err := c.do(ctx, KindPing, "GET /v2/", func() (*http.Request, error) {
		return newRequest(ctx, http.MethodGet, u.String(), nil)
	})
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// ResetTokens drops cached bearer tokens and a credential program's
// answer.
func (c *Client) ResetTokens() { c.auth.Forget() }
