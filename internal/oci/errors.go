// Package oci holds the vocabulary of the OCI Distribution Specification that
// regcache speaks: repository names, references, digests, request paths, media
// types and the error envelope.
//
// Everything here is pure: parsing and formatting with no I/O, so every check
// runs before a request touches the network or the disk.
package oci

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// ErrorCode is a code of the distribution spec's error envelope.
// https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md#error-codes
type ErrorCode string

// Codes the read side of a registry answers with. UNAVAILABLE is
// Distribution's code for a registry that cannot serve right now; regcache
// uses it when the upstream fails and nothing is cached.
const (
	ErrBlobUnknown     ErrorCode = "BLOB_UNKNOWN"
	ErrDigestInvalid   ErrorCode = "DIGEST_INVALID"
	ErrManifestInvalid ErrorCode = "MANIFEST_INVALID"
	ErrManifestUnknown ErrorCode = "MANIFEST_UNKNOWN"
	ErrNameInvalid     ErrorCode = "NAME_INVALID"
	ErrNameUnknown     ErrorCode = "NAME_UNKNOWN"
	ErrRangeInvalid    ErrorCode = "RANGE_INVALID"
	// ErrPaginationInvalid is Distribution's code for a bad n or last.
	ErrPaginationInvalid ErrorCode = "PAGINATION_NUMBER_INVALID"
	ErrSizeInvalid       ErrorCode = "SIZE_INVALID"
	ErrUnauthorized      ErrorCode = "UNAUTHORIZED"
	ErrDenied            ErrorCode = "DENIED"
	ErrUnsupported       ErrorCode = "UNSUPPORTED"
	ErrTooManyRequests   ErrorCode = "TOOMANYREQUESTS"
	ErrUnavailable       ErrorCode = "UNAVAILABLE"
	ErrUnknown           ErrorCode = "UNKNOWN"
)

// statusByCode is the single code → HTTP status table.
var statusByCode = map[ErrorCode]int{
	ErrBlobUnknown:       http.StatusNotFound,
	ErrDigestInvalid:     http.StatusBadRequest,
	ErrManifestInvalid:   http.StatusBadRequest,
	ErrManifestUnknown:   http.StatusNotFound,
	ErrNameInvalid:       http.StatusBadRequest,
	ErrNameUnknown:       http.StatusNotFound,
	ErrRangeInvalid:      http.StatusRequestedRangeNotSatisfiable,
	ErrPaginationInvalid: http.StatusBadRequest,
	ErrSizeInvalid:       http.StatusBadRequest,
	ErrUnauthorized:      http.StatusUnauthorized,
	ErrDenied:            http.StatusForbidden,
	ErrUnsupported:       http.StatusMethodNotAllowed,
	ErrTooManyRequests:   http.StatusTooManyRequests,
	ErrUnavailable:       http.StatusServiceUnavailable,
	ErrUnknown:           http.StatusInternalServerError,
}

// Status is the HTTP status that goes with the code.
func (c ErrorCode) Status() int {
	if s, ok := statusByCode[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is one entry of the spec's error envelope. It is also a Go error, so
// handlers can return it and one writer turns it into a response.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	Detail  any       `json:"detail,omitempty"`
	// Status overrides Code.Status() when non-zero (a 502 for an upstream
	// that answered garbage, say). It is not part of the wire envelope.
	Status int `json:"-"`
	// RetryAfter is passed on as the Retry-After header when set.
	RetryAfter string `json:"-"`
}

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// HTTPStatus is the status the error is answered with.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return e.Code.Status()
}

// Envelope is the spec's {"errors":[...]} body.
type Envelope struct {
	Errors []Error `json:"errors"`
}

// Write answers the request with the error envelope. HEAD responses get the
// status and headers only.
func (e *Error) Write(w http.ResponseWriter, r *http.Request) {
	recordError(w, e)
	body, _ := json.Marshal(Envelope{Errors: []Error{*e}})
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Set("Docker-Distribution-API-Version", "registry/2.0")
	h.Del("Docker-Content-Digest")
	if e.Code != ErrRangeInvalid { // a 416 keeps its Content-Range: bytes */size
		h.Del("Content-Range")
	}
	if e.RetryAfter != "" {
		h.Set("Retry-After", e.RetryAfter)
	}
	w.WriteHeader(e.HTTPStatus())
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// ErrorRecorder is a response writer that keeps the error a request is
// answered with: the access log's, so an error written anywhere (a
// middleware's refusal as much as a route's) is logged with its code and
// reason.
type ErrorRecorder interface {
	RecordError(e *Error)
}

// recordError tells the first ErrorRecorder among w and the writers it
// wraps (through Unwrap, as http.ResponseController finds them).
func recordError(w http.ResponseWriter, e *Error) {
	for {
		switch v := w.(type) {
		case ErrorRecorder:
			v.RecordError(e)
			return
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return
		}
	}
}
