package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/regcache/regcache/internal/auth"
)

// TestClassify pins what every kind of upstream failure means, token
// endpoint failures included, however it is wrapped.
func TestClassify(t *testing.T) {
	t.Parallel()
	up := func(status int, err error) error {
		return &Error{Upstream: "docker.io", Op: "GET", StatusCode: status, Err: err}
	}
	token := func(status int) error {
		return up(0, &auth.TokenError{Realm: "https://auth.example/token", StatusCode: status, RetryAfter: "7"})
	}
	tests := []struct {
		name  string
		err   error
		class Class
		ra    string
	}{
		{"nil", nil, NotUpstream, ""},
		{"another room's error", errors.New("disk full"), NotUpstream, ""},
		{"the client left", up(0, context.Canceled), NotUpstream, ""},
		{"404", up(http.StatusNotFound, nil), NotFound, ""},
		{"404 wrapped", fmt.Errorf("fetch: %w", up(http.StatusNotFound, nil)), NotFound, ""},
		{"401", up(http.StatusUnauthorized, nil), Refused, ""},
		{"403", up(http.StatusForbidden, nil), Refused, ""},
		{"429", &Error{StatusCode: http.StatusTooManyRequests, RetryAfter: "30"}, RateLimited, "30"},
		{"429 still running here", &Error{StatusCode: http.StatusTooManyRequests, RetryAfter: "12", Err: ErrRateLimited}, RateLimited, "12"},
		{"400", up(http.StatusBadRequest, nil), Rejected, ""},
		{"500", up(http.StatusInternalServerError, nil), Down, ""},
		{"503", up(http.StatusServiceUnavailable, nil), Down, ""},
		{"connection refused", up(0, errors.New("dial tcp: connection refused")), Down, ""},
		{"slow upstream", up(0, context.DeadlineExceeded), Down, ""},
		{"breaker open", up(0, &DownError{}), Down, ""},
		{"token 401", token(http.StatusUnauthorized), LoginRefused, ""},
		{"token 403", token(http.StatusForbidden), LoginRefused, ""},
		{"token 429", token(http.StatusTooManyRequests), RateLimited, "7"},
		{"token 400", token(http.StatusBadRequest), Rejected, ""},
		{"token 502", token(http.StatusBadGateway), Down, ""},
		{"token unreachable", token(0), Down, ""},
		{"bare token error", &auth.TokenError{StatusCode: http.StatusUnauthorized}, LoginRefused, ""},
		{"credential program failed", up(0, &auth.HelperError{Program: "docker-credential-x", Err: errors.New("exit 3")}), NoCredentials, ""},
	}
	for _, tt := range tests {
		c, ra := Classify(tt.err)
		if c != tt.class || ra != tt.ra {
			t.Errorf("%s: %s %q, want %s %q", tt.name, c, ra, tt.class, tt.ra)
		}
	}
	if !IsRefused(token(http.StatusUnauthorized)) || !IsRefused(up(http.StatusForbidden, nil)) || IsRefused(up(http.StatusNotFound, nil)) {
		t.Error("IsRefused disagrees with Classify")
	}
}
