package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
)

// maxErrorBody caps how much of an upstream error body is read.
const maxErrorBody = 64 << 10

// Error is an upstream failure: an HTTP status with the upstream's error
// envelope, or a transport error (StatusCode 0). Messages never carry
// credentials.
type Error struct {
	Upstream   string // the upstream's name, e.g. docker.io
	Op         string // what was being done: "GET manifest library/alpine:3.20"
	StatusCode int
	Errors     []oci.Error
	RetryAfter string
	Err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s: %s: ", e.Upstream, e.Op)
	switch {
	case e.StatusCode != 0:
		fmt.Fprintf(&b, "%d %s", e.StatusCode, http.StatusText(e.StatusCode))
		for _, x := range e.Errors {
			fmt.Fprintf(&b, "; %s: %s", x.Code, x.Message)
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether retrying the same request may succeed:
// connection errors and 5xx. 4xx (including 429) are never retried here.
func (e *Error) Temporary() bool {
	if errors.Is(e.Err, ErrUpstreamDown) || errors.Is(e.Err, ErrRateLimited) || errors.Is(e.Err, ErrTooManyRedirects) || errors.Is(e.Err, ErrSealed) {
		return false
	}
	if e.StatusCode == 0 {
		var he *auth.HelperError
		if errors.As(e.Err, &he) {
			return false // the credential program failed: asking again now tells the same
		}
		var te *auth.TokenError
		if errors.As(e.Err, &te) {
			return te.StatusCode == 0 || te.StatusCode >= 500
		}
		return true
	}
	return e.StatusCode >= 500
}

// checkResponse turns a non-2xx response into an *Error, reading a bounded
// part of the body. The body is closed.
func (c *Client) checkResponse(op string, resp *http.Response) error {
	defer resp.Body.Close()
	e := &Error{Upstream: c.name, Op: op, StatusCode: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var env oci.Envelope
	if json.Unmarshal(body, &env) == nil {
		e.Errors = env.Errors
	}
	return e
}
