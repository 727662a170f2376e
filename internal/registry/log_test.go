package registry

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/regcache/regcache/internal/oci"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogCarriesTheReason: an error's request log line has the code, the
// same reason the client's envelope has, and the duration in seconds as a
// JSON number.
func TestLogCarriesTheReason(t *testing.T) {
	e := newEnv(t, envOptions{})
	var buf syncBuffer
	ts := httptest.NewServer(New(e.content, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil)))).Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/v2/library/nosuch/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var env oci.Envelope
	if err := json.Unmarshal(body, &env); err != nil || len(env.Errors) != 1 || env.Errors[0].Message == "" {
		t.Fatalf("status %d, body %s: want one error with a message (%v)", resp.StatusCode, body, err)
	}
	ts.Close() // the log line is written when the handler returns
	line := requestLog(t, &buf)
	if line["error"] != string(env.Errors[0].Code) || line["reason"] != env.Errors[0].Message {
		t.Errorf("log error %v reason %v, client got %s %q", line["error"], line["reason"], env.Errors[0].Code, env.Errors[0].Message)
	}
	if d, ok := line["duration"].(float64); !ok || d <= 0 || d > 60 {
		t.Errorf("duration %#v: want seconds as a number", line["duration"])
	}
}

// wrappedWriter is a middleware's writer around the access log's, found
// through Unwrap as http.ResponseController finds it.
type wrappedWriter struct{ http.ResponseWriter }

func (w wrappedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestLogRecordThroughAWrappingMiddleware: the request's record travels
// with the access log's writer, so a middleware that wraps the writer
// (with Unwrap) still gets the cache result, route and error into the log
// line and the observer.
func TestLogRecordThroughAWrappingMiddleware(t *testing.T) {
	e := newEnv(t, envOptions{})
	var buf syncBuffer
	var seen []Served
	var mu sync.Mutex
	wrap := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { next.ServeHTTP(wrappedWriter{w}, r) })
	}
	ts := httptest.NewServer(New(e.content, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))), WithMiddleware(wrap),
		WithObserver(func(s Served) { mu.Lock(); seen = append(seen, s); mu.Unlock() })).Handler())
	defer ts.Close()
	img := e.imgs.Single
	for _, p := range []string{"/v2/" + img.Repo + "/manifests/" + img.Tag, "/v2/" + img.Repo + "/manifests/" + img.Tag, "/v2/library/nosuch/manifests/latest"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	ts.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader([]byte(buf.String())))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != 3 || len(seen) != 3 {
		t.Fatalf("%d log lines, %d observed, want 3 each:\n%s", len(lines), len(seen), buf.String())
	}
	if lines[1]["cache"] != "hit" || lines[1]["repository"] != img.Repo || seen[1].Cache != "hit" || seen[1].Kind != "manifest" || seen[1].Tag != img.Tag {
		t.Errorf("second pull: log %v, observed %+v: want a hit of %s:%s", lines[1], seen[1], img.Repo, img.Tag)
	}
	if lines[2]["error"] != string(oci.ErrNameUnknown) && lines[2]["error"] != string(oci.ErrManifestUnknown) {
		t.Errorf("unknown repository: log error %v", lines[2]["error"])
	}
}

// TestLogRecordsAMiddlewaresRefusal: an error a middleware writes itself
// (the access rules' allow-list, request limits and logins answer before
// routing) is in the log line and the observer with its code and reason,
// also through a writer that wraps the access log's.
func TestLogRecordsAMiddlewaresRefusal(t *testing.T) {
	e := newEnv(t, envOptions{})
	var buf syncBuffer
	var seen []Served
	var mu sync.Mutex
	refuse := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			oci.Errorf(oci.ErrDenied, "this mirror does not serve your network").Write(wrappedWriter{w}, r)
		})
	}
	ts := httptest.NewServer(New(e.content, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))), WithMiddleware(refuse),
		WithObserver(func(s Served) { mu.Lock(); seen = append(seen, s); mu.Unlock() })).Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/v2/library/alpine/manifests/latest")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ts.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
	line := requestLog(t, &buf)
	if line["error"] != string(oci.ErrDenied) || line["reason"] != "this mirror does not serve your network" {
		t.Errorf("log line %v: want error DENIED with the reason", line)
	}
	if len(seen) != 1 || seen[0].ErrCode != string(oci.ErrDenied) || seen[0].Status != http.StatusForbidden {
		t.Errorf("observed %+v: want one DENIED 403", seen)
	}
}
