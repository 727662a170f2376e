package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const blobDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestParseChallenge(t *testing.T) {
	t.Parallel()
	c, ok := parseChallenge(`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`)
	if !ok || c.scheme != "bearer" || c.params["realm"] != "https://auth.docker.io/token" ||
		c.params["service"] != "registry.docker.io" || c.params["scope"] != "repository:library/alpine:pull" {
		t.Fatalf("got %+v", c)
	}
	c, ok = parseChallenge(`Basic realm=Registry`)
	if !ok || c.scheme != "basic" || c.params["realm"] != "Registry" {
		t.Fatalf("got %+v", c)
	}
	if _, ok := parseChallenge(`Negotiate abc`); ok {
		t.Fatal("accepted unknown scheme")
	}
}

func TestRealmAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		realm, upstream string
		want            bool
	}{
		{"https://auth.docker.io/token", "https://registry-1.docker.io", true},
		{"https://ghcr.io/token", "https://ghcr.io", true},
		{"https://evil.example/token", "https://registry-1.docker.io", false},
		{"http://auth.docker.io/token", "https://registry-1.docker.io", false},
		{"http://localhost:8080/token", "http://127.0.0.1:5000", true},
		{"https://docker.io.evil.example/token", "https://registry-1.docker.io", false},
		{"https://10.0.0.1/token", "https://registry-1.docker.io", false},
	}
	for _, tt := range tests {
		r, _ := url.Parse(tt.realm)
		u, _ := url.Parse(tt.upstream)
		if got := realmAllowed(r, u); got != tt.want {
			t.Errorf("realmAllowed(%s, %s) = %v, want %v", tt.realm, tt.upstream, got, tt.want)
		}
	}
}

// tokenRegistry is a scripted registry that wants a bearer token per scope.
func tokenRegistry(t *testing.T, expiresIn int) (reg *httptest.Server, tokenCount *atomic.Int64, cdnAuth *atomic.Int64) {
	tokenCount, cdnAuth = new(atomic.Int64), new(atomic.Int64)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			cdnAuth.Add(1)
			http.Error(w, "no auth here", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, "blob")
	}))
	t.Cleanup(cdn.Close)
	var mu sync.Mutex
	issued := map[string]string{} // token → scope
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, _ := r.BasicAuth(); u != "me" || p != "secret" {
			http.Error(w, "bad creds", http.StatusUnauthorized)
			return
		}
		n := tokenCount.Add(1)
		tok := fmt.Sprintf("tok%d", n)
		mu.Lock()
		issued[tok] = r.URL.Query().Get("scope")
		mu.Unlock()
		fmt.Fprintf(w, `{"token":%q,"expires_in":%d}`, tok, expiresIn)
	}))
	t.Cleanup(tokens.Close)
	realm := strings.Replace(tokens.URL, "127.0.0.1", "localhost", 1) + "/token"
	reg = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/blobs/"+blobDigest)
		scope := "repository:" + repo + ":pull"
		mu.Lock()
		got, ok := issued[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		mu.Unlock()
		if !ok || got != scope {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="test",scope=%q`, realm, scope))
			w.WriteHeader(401)
			return
		}
		http.Redirect(w, r, cdn.URL+"/blob", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(reg.Close)
	return reg, tokenCount, cdnAuth
}

func TestTokensCachedPerScopeAndNotSentToCDN(t *testing.T) {
	t.Parallel()
	reg, tokenCount, cdnAuth := tokenRegistry(t, 300)
	u, _ := url.Parse(reg.URL)
	now := time.Now()
	tr := New(http.DefaultTransport, u, Credentials{Username: "me", Password: "secret"}, WithClock(func() time.Time { return now }))
	client := &http.Client{Transport: tr}
	get := func(repo string) {
		t.Helper()
		resp, err := client.Get(reg.URL + "/v2/" + repo + "/blobs/" + blobDigest)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", repo, resp.StatusCode)
		}
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { get("library/alpine") })
	}
	wg.Wait()
	if n := tokenCount.Load(); n != 1 {
		t.Errorf("20 requests on one scope fetched %d tokens, want 1", n)
	}
	get("library/busybox")
	if n := tokenCount.Load(); n != 2 {
		t.Errorf("second scope: %d tokens, want 2", n)
	}
	now = now.Add(10 * time.Minute) // past expiry
	get("library/alpine")
	if n := tokenCount.Load(); n != 3 {
		t.Errorf("after expiry: %d tokens, want 3", n)
	}
	if n := cdnAuth.Load(); n != 0 {
		t.Errorf("CDN received Authorization %d times", n)
	}
}

func TestRealmOnForeignDomainRefused(t *testing.T) {
	t.Parallel()
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://evil.example/token",service="x"`)
		w.WriteHeader(401)
	}))
	defer reg.Close()
	u, _ := url.Parse(strings.Replace(reg.URL, "127.0.0.1", "registry.test", 1))
	tr := New(http.DefaultTransport, u, Credentials{Username: "me", Password: "secret"})
	req, _ := http.NewRequest("GET", reg.URL+"/v2/x/manifests/latest", nil)
	req.URL.Host = u.Host
	req.Host = u.Host
	tr.base = &http.Transport{DialContext: func(ctx2 contextLike, network, addr string) (netConn, error) {
		return dialer.DialContext(ctx2, network, strings.TrimPrefix(reg.URL, "http://"))
	}}
	_, err := tr.RoundTrip(req)
	if err == nil || !strings.Contains(err.Error(), "refusing to send credentials") {
		t.Fatalf("err = %v, want a refusal", err)
	}
}

// TestCredentialSourceRotation: a rotated password (file) is used at the
// next token request without a restart.
func TestCredentialSourceRotation(t *testing.T) {
	t.Parallel()
	reg, _, _ := tokenRegistry(t, 300)
	u, _ := url.Parse(reg.URL)
	var mu sync.Mutex
	password := "old"
	tr := New(http.DefaultTransport, u, Credentials{}, WithCredentialSource(func() (Credentials, error) {
		mu.Lock()
		defer mu.Unlock()
		return Credentials{Username: "me", Password: password}, nil
	}))
	client := &http.Client{Transport: tr}
	if _, err := client.Get(reg.URL + "/v2/library/alpine/blobs/" + blobDigest); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("with the old password: %v, want a token endpoint 401", err)
	}
	mu.Lock()
	password = "secret"
	mu.Unlock()
	resp, err := client.Get(reg.URL + "/v2/library/alpine/blobs/" + blobDigest)
	if err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after rotation: %d", resp.StatusCode)
	}
}
