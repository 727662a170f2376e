package upstream

import (
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// ErrUpstreamDown is returned without a request while the circuit breaker
// holds an upstream that kept failing; callers answer from cache at once
// instead of waiting for a timeout per request.
var ErrUpstreamDown = errors.New("upstream marked down after repeated failures; retrying later")

// ErrRateLimited is returned without a request while an upstream's 429
// Retry-After has not passed: the credential is not asked again before.
var ErrRateLimited = errors.New("upstream rate limit exhausted; waiting for Retry-After")

// breaker is a circuit breaker with exponential backoff: after threshold
// consecutive failures it opens for backoff; the first request after that
// is a probe, and its success closes the breaker.
type breaker struct {
	threshold  int
	minBackoff time.Duration
	maxBackoff time.Duration

	mu        sync.Mutex
	failures  int
	openUntil time.Time
	backoff   time.Duration
	probing   bool

	limitedUntil time.Time // from a 429's Retry-After
}

func newBreaker() *breaker {
	return &breaker{threshold: 5, minBackoff: 5 * time.Second, maxBackoff: 5 * time.Minute}
}

// allow reports whether a request may go out now, and whether it is the
// probe of an open breaker (which must end in success, failure or
// endProbe). It returns ErrRateLimited (with the seconds left) or
// ErrUpstreamDown when the request may not go.
func (b *breaker) allow(now time.Time) (probe bool, retryAfter string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Before(b.limitedUntil) {
		return false, strconv.Itoa(int(b.limitedUntil.Sub(now).Seconds()) + 1), ErrRateLimited
	}
	if b.failures < b.threshold {
		return false, "", nil
	}
	if now.Before(b.openUntil) || b.probing {
		return false, "", ErrUpstreamDown
	}
	b.probing = true // this request is the probe
	return true, "", nil
}

// endProbe ends a probe that told nothing about the upstream's health (its
// client left), so the next request may probe.
func (b *breaker) endProbe() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

func (b *breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.backoff, b.probing = 0, 0, false
}

func (b *breaker) failure(now time.Time) (opened bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.probing = false
	if b.failures < b.threshold {
		return false
	}
	if b.backoff == 0 {
		b.backoff = b.minBackoff
	} else {
		b.backoff = min(b.backoff*2, b.maxBackoff)
	}
	b.openUntil = now.Add(b.backoff)
	return true
}

// limited records a 429 and returns how long the upstream is left alone.
func (b *breaker) limited(now time.Time, retryAfter string) time.Duration {
	d := parseRetryAfter(now, retryAfter)
	b.mu.Lock()
	defer b.mu.Unlock()
	if until := now.Add(d); until.After(b.limitedUntil) {
		b.limitedUntil = until
	}
	return d
}

// state is the breaker's state for status reports.
func (b *breaker) state(now time.Time) (down bool, limitedUntil time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.failures >= b.threshold && (now.Before(b.openUntil) || b.probing), b.limitedUntil
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
