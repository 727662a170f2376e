package admin

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestAdminMayChange: without a token only loopback may change state; with
// one, only the token does, from anywhere.
func TestAdminMayChange(t *testing.T) {
	for _, tc := range []struct {
		token, remote, auth string
		want                bool
	}{
		{"", "127.0.0.1:4000", "", true},
		{"", "[::1]:4000", "", true},
		{"", "10.0.0.5:4000", "", false},
		{"", "10.0.0.5:4000", "Bearer x", false},
		{"s3cret", "127.0.0.1:4000", "", false},
		{"s3cret", "10.0.0.5:4000", "Bearer s3cret", true},
		{"s3cret", "10.0.0.5:4000", "Bearer s3cre", false},
		{"s3cret", "10.0.0.5:4000", "Basic s3cret", false},
	} {
		a := newAuth(func() string { return tc.token }, nil)
		r := httptest.NewRequest("POST", "/cache/prune", nil)
		r.RemoteAddr = tc.remote
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		if got := a.mayChange(r); got != tc.want {
			t.Errorf("token %q from %s with %q: got %v, want %v", tc.token, tc.remote, tc.auth, got, tc.want)
		}
	}
}

// TestRefuseAdmin: the refusal names the fix.
func TestRefuseAdmin(t *testing.T) {
	a := newAuth(func() string { return "" }, nil)
	w := httptest.NewRecorder()
	a.refuse(w)
	if w.Code != 403 || !strings.Contains(w.Body.String(), "admin_token") {
		t.Errorf("got %d %q", w.Code, w.Body.String())
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.1.1:1"
	if a.maySeePrivate(r) {
		t.Error("a remote request without a token sees private names")
	}
}
