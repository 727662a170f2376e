package httpguard

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHosts(t *testing.T) {
	ok := Hosts("mirror.example:5001", "build-host")
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:5001", true}, {"[::1]:5001", true}, {"10.0.0.5", true}, {"localhost:5001", true},
		{"LOCALHOST.", true}, {"app.localhost:1", true}, {"mirror.example:5001", true}, {"Build-Host:5001", true},
		{"evil.example:5001", false}, {"localhost.evil.example", false}, {"", false}, {"mirror.example.evil:5001", false},
	} {
		if got := ok(tc.host); got != tc.want {
			t.Errorf("Host %q: %v, want %v", tc.host, got, tc.want)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name, ct, body string
		ok             bool
	}{
		{"one value", "application/json", `{"a":1}`, true},
		{"white space after", "application/json; charset=utf-8", "{\"a\":1}\n\t ", true},
		{"trailing bytes", "application/json", `{"a":1}=`, false},
		{"second value", "application/json", `{"a":1}{"a":2}`, false},
		{"unknown field", "application/json", `{"b":1}`, false},
		{"text/plain", "text/plain", `{"a":1}`, false},
		{"no content type", "", `{"a":1}`, false},
		{"over the limit", "application/json", `{"a":1}` + strings.Repeat(" ", 100), false},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
		if tc.ct != "" {
			r.Header.Set("Content-Type", tc.ct)
		}
		var v struct{ A int }
		if err := DecodeJSON(r, &v, 64); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestGuardContentTypes: a state-changing call is taken as JSON or as a
// tar (a bundle upload), never as what an HTML form sends.
func TestGuardContentTypes(t *testing.T) {
	t.Parallel()
	h := Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), func(string) bool { return true })
	for ct, want := range map[string]int{
		"application/json": http.StatusOK, "application/x-tar": http.StatusOK,
		"text/plain": http.StatusUnsupportedMediaType, "application/x-www-form-urlencoded": http.StatusUnsupportedMediaType,
		"multipart/form-data; boundary=x": http.StatusUnsupportedMediaType, "": http.StatusUnsupportedMediaType,
	} {
		r := httptest.NewRequest(http.MethodPost, "/cache/import", strings.NewReader("x"))
		r.Header.Set("Content-Type", ct)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("POST with %q: %d, want %d", ct, w.Code, want)
		}
	}
}
