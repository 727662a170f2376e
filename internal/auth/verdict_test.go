package auth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// basicRegistry answers 401 with a Basic challenge unless the request
// carries user:want's password.
func basicRegistry(t *testing.T, want *atomic.Value) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != "user" || p != want.Load().(string) {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.URL.Path == "/v2/private/manifests/x" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

// TestVerdictBasic: with Basic auth, a 401 to the configured password is
// a rejection, a 403 for one repository is not, a 2xx accepts them; the
// check asks again while they are rejected and heals with the password.
func TestVerdictBasic(t *testing.T) {
	t.Parallel()
	var want atomic.Value
	want.Store("right")
	s := basicRegistry(t, &want)
	u, _ := url.Parse(s.URL)
	pw := "wrong"
	tr := New(http.DefaultTransport, u, Credentials{}, WithCredentialSource(func() (Credentials, error) {
		return Credentials{Username: "user", Password: pw}, nil
	}))
	get := func(path string) int {
		req, _ := http.NewRequest(http.MethodGet, s.URL+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	anon := func() *http.Response {
		req, _ := http.NewRequest(http.MethodGet, s.URL+"/v2/", nil)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if v := tr.Verdict(); v.Rejected || !v.Checked.IsZero() {
		t.Fatalf("before any request: %+v", v)
	}
	if err := tr.CheckCredentials(t.Context(), anon()); err != nil {
		t.Fatal(err)
	}
	if v := tr.Verdict(); !v.Rejected || v.Reason == "" || v.Since.IsZero() {
		t.Fatalf("after the check with a wrong password: %+v", v)
	}
	pw = "right"
	if err := tr.CheckCredentials(t.Context(), anon()); err != nil {
		t.Fatal(err)
	}
	if v := tr.Verdict(); v.Rejected {
		t.Fatalf("after the check with the right password: %+v", v)
	}
	if code := get("/v2/private/manifests/x"); code != http.StatusForbidden {
		t.Fatalf("private repository: %d", code)
	}
	if v := tr.Verdict(); v.Rejected {
		t.Errorf("a 403 for one repository rejected the credentials: %+v", v)
	}
	want.Store("rotated")
	if code := get("/v2/other/manifests/x"); code != http.StatusUnauthorized {
		t.Fatalf("after the registry's password changed: %d", code)
	}
	if v := tr.Verdict(); !v.Rejected {
		t.Errorf("a 401 to the configured password did not reject them: %+v", v)
	}
}

// TestVerdictAnonymous: an anonymous Transport never judges credentials,
// whatever the registry answers.
func TestVerdictAnonymous(t *testing.T) {
	t.Parallel()
	var want atomic.Value
	want.Store("right")
	s := basicRegistry(t, &want)
	u, _ := url.Parse(s.URL)
	tr := New(http.DefaultTransport, u, Credentials{})
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/v2/private/manifests/x", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := tr.CheckCredentials(t.Context(), resp); err != nil {
		t.Fatal(err)
	}
	if v := tr.Verdict(); v.Rejected || !v.Checked.IsZero() {
		t.Errorf("anonymous: %+v", v)
	}
}
