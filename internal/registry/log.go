package registry

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// reqInfo is filled in by handlers and logged once per request.
type reqInfo struct {
	cache    mirror.CacheResult // hit, miss, stale, revalidated, negative
	upstream string
	route    string
	repo     string
	errCode  string
	errMsg   string // the message the client was sent, cut at maxLoggedReason
	kind     string
	tag      string // the tag of a manifest request ("" by digest)
	stale    string // why a stale answer was served
	joined   bool   // a miss that joined another request's fill
	// clientGone: a write to the client failed (it closed the
	// connection); outcome says how an answer ended short on purpose
	// ("client_closed").
	clientGone bool
	outcome    string
}

// info is the record of the request answered through w: the access log's
// writer carries it, found past any writer a middleware wrapped around it
// (Unwrap). Carrying it in the writer, not in the request's context, spares
// every request a copy of the *http.Request and a context value (issue 28).
// A writer that is not the access log's gets a record nobody reads.
func info(w http.ResponseWriter) *reqInfo {
	for {
		switch v := w.(type) {
		case *logWriter:
			return &v.ri
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return &reqInfo{}
		}
	}
}

// RecordError keeps the error the request is answered with for its log
// line and the observer (oci.Error.Write calls it, wherever the error is
// written from).
func (w *logWriter) RecordError(e *oci.Error) {
	ri := &w.ri
	ri.errCode, ri.errMsg = string(e.Code), e.Message
	if len(ri.errMsg) > maxLoggedReason {
		ri.errMsg = ri.errMsg[:maxLoggedReason] + "…"
	}
}

// maxLoggedReason bounds the reason logged with a request: messages can
// quote upstream answers.
const maxLoggedReason = 512

// logWriter records status and bytes for the access log, and carries the
// request's record the handlers fill in.
type logWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
	ri          reqInfo
}

func (w *logWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	if err != nil {
		w.ri.clientGone = true
	}
	return n, err
}

func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom keeps net/http's sendfile path for cache hits: the server's own
// writer turns an *os.File source into sendfile(2).
func (w *logWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	n, err := rf.ReadFrom(r)
	w.bytes += n
	if err != nil {
		w.ri.clientGone = true
	}
	return n, err
}

// accessLog writes one JSON line per request: method, path, status, bytes,
// duration (seconds), cache result and route, and for an error its code
// and the reason the client was told. Query strings are not logged (a
// redirect's query can carry a token); neither are headers.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		lw := &logWriter{ResponseWriter: w, status: http.StatusOK}
		ri := &lw.ri
		h := lw.Header()
		h["Docker-Distribution-Api-Version"] = apiVersionValue
		h["X-Content-Type-Options"] = nosniffValue
		defer func() {
			p := recover()
			status := lw.status
			if p != nil {
				status = 0 // aborted mid-response
			}
			if s.log.Enabled(r.Context(), slog.LevelInfo) {
				s.logRequest(r, ri, status, lw.bytes, time.Since(start), p != nil)
			}
			if s.metrics != nil {
				cache := string(ri.cache)
				if cache == "" {
					cache = "none"
				}
				c := s.series.get(requestKey{kind: ri.kind, method: methodLabel(r.Method), cache: cache, status: status})
				c.requests.Inc()
				c.bytes.Add(float64(lw.bytes))
			}
			s.observed(r, ri, status, lw.bytes)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(lw, r)
	})
}

// noteOutcome records how the content service answered.
func noteOutcome(w http.ResponseWriter, out mirror.Outcome) {
	ri := info(w)
	if out.Cache != "" {
		ri.cache = out.Cache
	}
	if out.Stale != "" {
		ri.stale = out.Stale
	}
	ri.joined = ri.joined || out.Joined
}

// logRequest writes the access log line of one request.
func (s *Server) logRequest(r *http.Request, ri *reqInfo, status int, bytes int64, took time.Duration, aborted bool) {
	attrs := []slog.Attr{
		slog.String("method", methodLabel(r.Method)), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.Int64("bytes", bytes),
		slog.Float64("duration", took.Seconds()), slog.String("remote", r.RemoteAddr),
	}
	if ri.cache != "" {
		attrs = append(attrs, slog.String("cache", string(ri.cache)), slog.Bool("hit", ri.cache != "miss"))
	}
	if ri.upstream != "" {
		attrs = append(attrs, slog.String("upstream", ri.upstream), slog.String("route", ri.route), slog.String("repository", ri.repo))
	}
	if ri.errCode != "" {
		attrs = append(attrs, slog.String("error", ri.errCode), slog.String("reason", ri.errMsg))
	}
	if ri.stale != "" {
		attrs = append(attrs, slog.String("stale_reason", ri.stale))
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if ri.outcome != "" {
		attrs = append(attrs, slog.String("outcome", ri.outcome))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}

// methodLabel is the request method from a closed set, so a client
// cannot grow the metrics or the log with methods of its own making.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
