package cluster

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestWrongSecretsBackedOff: wrong secrets on the internal endpoint are
// logged (never their value) and counted; after five from one address the
// sixth is refused unchecked with 429, even the right one, while another
// address is still checked.
func TestWrongSecretsBackedOff(t *testing.T) {
	const secret = "the-cluster-secret-0123"
	var logs bytes.Buffer
	c := New(nil, "http://127.0.0.1:1", secret, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	h := c.Handler(nil) // nothing is served: every request here is refused before the content
	call := func(from, tok string) int {
		r := httptest.NewRequest(http.MethodGet, PeerPath+"sha256:"+strings.Repeat("a", 64)+"?size=1&offset=0", nil)
		r.RemoteAddr = from
		r.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	for i := range 6 {
		if code := call("192.0.2.1:4000", "guessed-secret"); code != http.StatusUnauthorized {
			t.Fatalf("wrong secret %d: %d", i, code)
		}
	}
	if code := call("192.0.2.1:4000", secret); code != http.StatusTooManyRequests {
		t.Errorf("right secret during the backoff: %d, want 429", code)
	}
	if code := call("192.0.2.2:4000", "guessed-secret"); code != http.StatusUnauthorized {
		t.Errorf("another address: %d, want 401", code)
	}
	if failed, throttled := c.AuthFailures(); failed != 7 || throttled != 1 {
		t.Errorf("AuthFailures = %d, %d; want 7, 1", failed, throttled)
	}
	if l := logs.String(); !strings.Contains(l, "wrong or missing secret") || strings.Contains(l, "guessed-secret") {
		t.Errorf("log: %s", l)
	}
}
