package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"syscall"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// toWire maps a domain error to the spec's error envelope. unknown is the
// code for "the upstream does not have it" (MANIFEST_UNKNOWN, BLOB_UNKNOWN).
func toWire(err error, unknown oci.ErrorCode) *oci.Error {
	var we *oci.Error
	if errors.As(err, &we) {
		return we
	}
	if ra, ok := upstream.IsTooManyRequests(err); ok {
		return &oci.Error{Code: oci.ErrTooManyRequests, RetryAfter: ra,
			Message: "the upstream's rate limit is exhausted and nothing is cached: " + err.Error()}
	}
	if errors.Is(err, fill.ErrDiskFull) || errors.Is(err, syscall.ENOSPC) {
		return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusInsufficientStorage, Message: "the mirror's cache disk is full: " + err.Error()}
	}
	if errors.Is(err, blobstore.ErrDigestMismatch) || errors.Is(err, blobstore.ErrSizeMismatch) {
		return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusBadGateway, Message: "the upstream sent content that does not match its digest; nothing was cached: " + err.Error()}
	}
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch {
		case ue.StatusCode == http.StatusNotFound:
			return &oci.Error{Code: unknown, Message: err.Error()}
		case ue.StatusCode == http.StatusUnauthorized || ue.StatusCode == http.StatusForbidden:
			return &oci.Error{Code: oci.ErrDenied, Message: err.Error() + " (the mirror's upstream credentials do not give access)"}
		case ue.StatusCode >= 400 && ue.StatusCode < 500:
			return &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusBadGateway, Message: err.Error()}
		}
		var te *auth.TokenError
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return &oci.Error{Code: oci.ErrDenied, Message: err.Error() + " (check the mirror's upstream credentials)"}
		}
		return &oci.Error{Code: oci.ErrUnavailable, Message: err.Error() + "; nothing is cached for this request"}
	}
	return &oci.Error{Code: oci.ErrUnknown, Message: fmt.Sprintf("internal error: %v", err)}
}

// writeError answers with the error envelope, unless the response has
// already begun: then the connection is cut so the client sees a failed
// transfer rather than a short body taken as complete.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, unknown oci.ErrorCode) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client left
	}
	if lw, ok := w.(*logWriter); ok && lw.wroteHeader {
		panic(http.ErrAbortHandler)
	}
	e := toWire(err, unknown)
	noteError(r, e)
	e.Write(w, r)
}
