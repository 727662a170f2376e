package registry

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/regcache/regcache/internal/oci"
)

// toWire is the error envelope for err: the content service and the
// access check answer with *oci.Error; anything else is an internal error.
func toWire(err error) *oci.Error {
	var we *oci.Error
	if errors.As(err, &we) {
		return we
	}
	return &oci.Error{Code: oci.ErrUnknown, Message: "internal error (the mirror's log has the details)"}
}

// writeError answers with the error envelope, unless the response has
// already begun: then the connection is cut so the client sees a failed
// transfer rather than a short body taken as complete.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client left
	}
	if lw, ok := w.(*logWriter); ok && lw.wroteHeader {
		panic(http.ErrAbortHandler)
	}
	e := toWire(err)
	if e.Code == oci.ErrUnknown {
		// The client gets no detail (it may name local paths); the log has it.
		s.log.Error("internal error answering a request", slog.String("path", r.URL.Path), slog.Any("error", err))
	}
	e.Write(w, r) // records the error in the log line (logWriter.RecordError)
}
