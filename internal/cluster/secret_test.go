package cluster

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"
)

// TestWrongSecretsBackedOff: wrong secrets on the internal endpoint are
// logged (never their value) and counted; after five from one address the
// sixth is refused unchecked with 429, even the right one, while another
// address is still checked.
func TestWrongSecretsBackedOff(t *testing.T) {
	const secret = "the-cluster-secret-0123"
	var logs bytes.Buffer
	c := New(nil, "http://127.0.0.1:1", secret, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	h := c.Handler(nil, nil) // nothing is served: every request here is refused before the content
	call := func(from, tok string) int {
		r := httptest.NewRequest(http.MethodGet, PeerPath+"sha256:"+strings.Repeat("a", 64)+"?size=1&offset=0", nil)
		r.RemoteAddr = from
		r.Header.Set(PeerAuthHeader, PeerSignature(tok, r.Method, r.URL.RequestURI(), time.Now()))
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

// TestMembersFromRedisChecked: a member written into Redis that is not
// http(s)://host[:port] (a path and query to collect the secret, a user,
// another scheme) is never taken as a replica, so no request (and no
// secret) goes to it.
func TestMembersFromRedisChecked(t *testing.T) {
	rdb := newRedis(t)
	var logs bytes.Buffer
	c := New(rdb, "http://10.0.0.1:5000", "secret", WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err := c.Join(t.Context()); err != nil {
		t.Fatal(err)
	}
	bad := []string{"http://evil.example/steal?x=1", "http://evil.example:80/x", "http://u:p@evil.example",
		"ftp://evil.example", "http://evil.example#f", "//evil.example", "evil.example:80", "http://"}
	good := []string{"http://10.0.0.2:5000", "https://replica.example", "http://[::1]:5000/"}
	now := float64(time.Now().UnixMilli())
	for _, m := range append(slices.Clone(bad), good...) {
		if err := rdb.ZAdd(t.Context(), c.key("members"), redis.Z{Score: now, Member: m}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	c.heartbeat(t.Context())
	live := c.Live()
	for _, m := range bad {
		if slices.Contains(live, m) {
			t.Errorf("%q taken as a replica", m)
		}
	}
	for _, m := range good {
		if !slices.Contains(live, m) {
			t.Errorf("%q left out", m)
		}
	}
	if !strings.Contains(logs.String(), "not http(s)://host[:port]") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestPeerAuthNeverSendsTheSecret: replicas prove the secret with an HMAC
// of the request (method, path and query, time), never the secret itself;
// the old bearer secret, a signature for another path, or one older than
// the skew are refused; the signature a replica sends is accepted.
func TestPeerAuthNeverSendsTheSecret(t *testing.T) {
	const secret = "the-cluster-secret-0123"
	var got http.Header
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer peer.Close()
	c := New(nil, "http://127.0.0.1:1", secret)
	c.fetchPeer(t.Context(), peer.URL, "docker.io", "library/x", digest.Digest("sha256:"+strings.Repeat("b", 64)), 1, 0)
	for k, vs := range got {
		for _, v := range vs {
			if strings.Contains(v, secret) {
				t.Errorf("a replica sent the secret in %s", k)
			}
		}
	}
	if got.Get(PeerAuthHeader) == "" {
		t.Fatal("a replica sent no signature")
	}
	uri := PeerPath + "sha256:" + strings.Repeat("a", 64) + "?size=1&offset=0"
	now := time.Now()
	tests := []struct {
		name   string
		header string
		value  string
		ok     bool
	}{
		{"signed now", PeerAuthHeader, PeerSignature(secret, http.MethodGet, uri, now), true},
		{"the secret as a bearer token", "Authorization", "Bearer " + secret, false},
		{"signed for another path", PeerAuthHeader, PeerSignature(secret, http.MethodGet, uri+"&x=1", now), false},
		{"signed two minutes ago", PeerAuthHeader, PeerSignature(secret, http.MethodGet, uri, now.Add(-2*time.Minute)), false},
		{"signed with another secret", PeerAuthHeader, PeerSignature("another", http.MethodGet, uri, now), false},
		{"garbage", PeerAuthHeader, "t=x,sig=y", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, uri, nil)
		r.Header.Set(tt.header, tt.value)
		if ok := c.verifyPeer(r, now); ok != tt.ok {
			t.Errorf("%s: accepted %v, want %v", tt.name, ok, tt.ok)
		}
	}
}
