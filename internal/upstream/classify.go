package upstream

import (
	"context"
	"errors"
	"net/http"

	"github.com/regcache/regcache/internal/auth"
)

// Class is what an error of this package's client means, for the rooms
// that decide on it (the content service's answers and fallbacks, access's
// public-repository question, the warm-up's advice). It is the one place
// that unwraps a token endpoint's failure: callers ask Classify, never
// auth.TokenError or an error's text.
type Class int

const (
	// NotUpstream: not a failure of an upstream (nil, the caller's own
	// context ending, another room's error).
	NotUpstream Class = iota
	// NotFound: the registry says the thing does not exist (404).
	NotFound
	// Refused: the registry refused the request (401, 403): an answer
	// about this repository, not an outage.
	Refused
	// LoginRefused: the token endpoint refused the credentials (401, 403).
	LoginRefused
	// RateLimited: a 429 from the registry or its token endpoint, or its
	// Retry-After still running here; RetryAfter says how long.
	RateLimited
	// Rejected: another 4xx: the upstream will not do this request.
	Rejected
	// Down: the registry or its token endpoint cannot be reached, answers
	// 5xx, or its breaker is open; another try (or member) may work.
	Down
	// NoCredentials: the upstream's credential program failed: the
	// mirror's configuration to fix, not the upstream's doing (no member
	// of a fallback chain stands in for it).
	NoCredentials
)

var classNames = [...]string{"not-upstream", "not-found", "refused", "login-refused", "rate-limited", "rejected", "down", "no-credentials"}

func (c Class) String() string { return classNames[c] }

// Classify says what err means, and for RateLimited the Retry-After.
func Classify(err error) (Class, string) {
	if err == nil || errors.Is(err, context.Canceled) || (errors.Is(err, context.DeadlineExceeded) && !isUpstream(err)) {
		return NotUpstream, ""
	}
	var he *auth.HelperError
	if errors.As(err, &he) {
		return NoCredentials, ""
	}
	var te *auth.TokenError
	tokenErr := errors.As(err, &te)
	var ue *Error
	if !errors.As(err, &ue) && !tokenErr {
		return NotUpstream, ""
	}
	switch {
	case ue != nil && errors.Is(ue.Err, ErrUpstreamDown):
		return Down, ""
	case ue != nil && ue.StatusCode == http.StatusTooManyRequests:
		return RateLimited, ue.RetryAfter
	case tokenErr && te.StatusCode == http.StatusTooManyRequests:
		return RateLimited, te.RetryAfter
	case tokenErr && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return LoginRefused, ""
	case tokenErr && te.StatusCode != 0 && te.StatusCode < 500:
		return Rejected, ""
	case tokenErr:
		return Down, ""
	case ue.StatusCode == http.StatusNotFound:
		return NotFound, ""
	case ue.StatusCode == http.StatusUnauthorized || ue.StatusCode == http.StatusForbidden:
		return Refused, ""
	case ue.StatusCode >= 400 && ue.StatusCode < 500:
		return Rejected, ""
	}
	return Down, "" // 5xx, or a transport error (StatusCode 0)
}

// isUpstream reports whether err is this package's *Error (a deadline of
// an upstream request is the upstream being slow: Down).
func isUpstream(err error) bool {
	var ue *Error
	return errors.As(err, &ue)
}

// IsNotFound reports whether the upstream said the thing does not exist.
func IsNotFound(err error) bool { c, _ := Classify(err); return c == NotFound }

// IsRefused reports that the upstream or its token endpoint refused
// access (401 or 403): that is its answer, not an outage.
func IsRefused(err error) bool {
	c, _ := Classify(err)
	return c == Refused || c == LoginRefused
}

// IsTooManyRequests reports an upstream 429 (from the registry or its
// token endpoint, or its Retry-After still running), and the Retry-After.
func IsTooManyRequests(err error) (string, bool) {
	c, ra := Classify(err)
	return ra, c == RateLimited
}
