package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// ErrUpstreamDown is returned without a request while the circuit breaker
// of the endpoint a request needs is open; callers answer from cache at
// once instead of waiting for a timeout per request. The error that wraps
// it is a *DownError.
var ErrUpstreamDown = errors.New("upstream marked down after repeated failures")

// ErrRateLimited is returned without a request while an upstream's 429
// Retry-After has not passed: the credential is not asked again before.
var ErrRateLimited = errors.New("upstream rate limit exhausted; waiting for Retry-After")

// Breaker scopes: failures are counted per endpoint family, so 503s on
// manifests do not stop blob fills and a dead CDN host does not stop
// manifests. CDN hosts a blob redirect leads to get "cdn <host>" scopes.
const (
	ScopeManifests = "manifests" // manifests, tags, referrers and the /v2/ ping
	ScopeBlobs     = "blobs"     // blob requests to the registry host
	ScopeToken     = "token"     // the token realm
	// ScopeCredentials is the upstream's credential program
	// (credential_helper, credential_command): shown open while its last
	// run failed, which fails the requests that need credentials at once.
	ScopeCredentials = "credentials"
	scopeCDN         = "cdn "
	// maxCDNScopes bounds the hosts with a breaker of their own; the
	// rest (a hostile upstream can redirect anywhere) share one.
	maxCDNScopes   = 16
	scopeOtherCDNs = "cdn (other hosts)"
)

// DownError is a request refused because its scope's breaker is open.
type DownError struct {
	Scope     string
	Since     time.Time // when the breaker opened
	LastError string
	NextProbe time.Time // the earliest a request may probe the scope again
}

func (e *DownError) Error() string {
	return fmt.Sprintf("upstream %s endpoint marked down since %s after repeated failures (last: %s); the next request after %s probes it",
		e.Scope, e.Since.UTC().Format(time.TimeOnly), e.LastError, e.NextProbe.UTC().Format(time.TimeOnly))
}

// Is makes errors.Is(err, ErrUpstreamDown) hold.
func (e *DownError) Is(target error) bool { return target == ErrUpstreamDown }

// breaker is the circuit breaker of one scope. After threshold consecutive
// failures it opens. While open, a request may go out as the probe when
// no other probe is in flight and interval has passed since the last one;
// the others fail fast. A probe's success closes the breaker at once: the
// first request after the upstream heals is served.
type breaker struct {
	threshold int
	interval  time.Duration

	mu        sync.Mutex
	failures  int
	open      bool
	since     time.Time
	lastErr   string
	probing   bool
	lastProbe time.Time
}

// allow reports whether a request may go out now, and whether it is the
// probe of an open breaker (which must end in success, failure or
// endProbe).
func (b *breaker) allow(scope string, now time.Time) (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return false, nil
	}
	next := b.lastProbe.Add(b.interval)
	if b.probing || now.Before(next) {
		return false, &DownError{Scope: scope, Since: b.since, LastError: b.lastErr, NextProbe: next}
	}
	b.probing, b.lastProbe = true, now
	return true, nil
}

// endProbe ends a probe that told nothing about the upstream's health (its
// client left), so the next request may probe.
func (b *breaker) endProbe() {
	b.mu.Lock()
	b.probing = false
	b.lastProbe = time.Time{}
	b.mu.Unlock()
}

// success records an answer; it reports whether that closed the breaker,
// and for how long it had been open.
func (b *breaker) success(now time.Time) (closed bool, openFor time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	closed, openFor = b.open, now.Sub(b.since)
	b.failures, b.open, b.probing, b.lastErr = 0, false, false, ""
	return closed, openFor
}

// failure records a failed request; it reports whether it opened the
// breaker.
func (b *breaker) failure(now time.Time, err string) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.probing = false
	b.lastErr = err
	if b.open {
		b.lastProbe = now
		return false
	}
	if b.failures < b.threshold {
		return false
	}
	b.open, b.since, b.lastProbe = true, now, now
	return true
}

// BreakerState is one scope's breaker, for status reports.
type BreakerState struct {
	Scope string `json:"scope"`
	Open  bool   `json:"open"`
	// Failures is the count of consecutive failures.
	Failures  int       `json:"failures"`
	LastError string    `json:"lastError,omitempty"`
	Since     time.Time `json:"since,omitzero"`     // when it opened
	NextProbe time.Time `json:"nextProbe,omitzero"` // the earliest probe, while open
}

func (b *breaker) state(scope string) BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := BreakerState{Scope: scope, Open: b.open, Failures: b.failures, LastError: b.lastErr}
	if b.open {
		s.Since, s.NextProbe = b.since, b.lastProbe.Add(b.interval)
	}
	return s
}

// Kinds of upstream request, each held back on its own after a 429: Docker
// Hub counts manifest GETs only, so a 429 there must not stop the blob
// fetches, HEADs and tag lists it does not count.
const (
	KindManifestGet  = "manifest GET" // a counted pull
	KindManifestHead = "manifest HEAD"
	KindBlob         = "blob"
	KindList         = "tags and referrers"
	KindPing         = "ping"
)

// limiter holds each kind of request back after a 429 on that kind, until
// its Retry-After.
type limiter struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// allow returns ErrRateLimited, with the seconds left, until the kind's
// Retry-After has passed.
func (l *limiter) allow(kind string, now time.Time) (retryAfter string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if until := l.until[kind]; now.Before(until) {
		return strconv.Itoa(int(until.Sub(now).Seconds()) + 1), ErrRateLimited
	}
	return "", nil
}

// limited records a 429 on a kind and returns how long that kind is left
// alone.
func (l *limiter) limited(kind string, now time.Time, retryAfter string) time.Duration {
	d := parseRetryAfter(now, retryAfter)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.until == nil {
		l.until = map[string]time.Time{}
	}
	if until := now.Add(d); until.After(l.until[kind]) {
		l.until[kind] = until
	}
	return d
}

// LimitState is one kind of request held back by a 429.
type LimitState struct {
	Kind  string    `json:"kind"`
	Until time.Time `json:"until"`
}

// state lists the kinds held back at now, sorted by kind.
func (l *limiter) state(now time.Time) []LimitState {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []LimitState
	for k, u := range l.until {
		if u.After(now) {
			out = append(out, LimitState{Kind: k, Until: u})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// parseRetryAfter reads seconds or an HTTP date; absent or odd values mean
// one minute, and anything is capped at an hour.
func parseRetryAfter(now time.Time, v string) time.Duration {
	d := time.Minute
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, time.Second), time.Hour)
}
