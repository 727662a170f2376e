package upstream

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
)

// TestRedirectLoopBounded: an upstream whose blob redirects in a loop costs
// at most maxRedirects+1 requests per client request (the loop is not
// temporary: neither retried nor resumed), and says what happened.
func TestRedirectLoopBounded(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusOK)
			return
		}
		hits.Add(1)
		http.Redirect(w, r, r.URL.Path+"?again", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c, err := New("hostile", srv.URL, auth.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.BlobGet(t.Context(), "team/app", digest.FromString("x"), 0)
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Fatalf("a redirect loop: %v, want ErrTooManyRedirects", err)
	}
	var ue *Error
	if !errors.As(err, &ue) || ue.Temporary() {
		t.Errorf("a redirect loop reads as temporary: it would be retried")
	}
	if n := hits.Load(); n > maxRedirects+1 {
		t.Errorf("one client request cost the upstream %d requests, want at most %d", n, maxRedirects+1)
	}
}
