package access

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range ss {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	a, err := New(Config{Allow: prefixes(t, "10.0.0.0/8", "2001:db8::/32"), TrustedProxies: prefixes(t, "192.0.2.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string
		ok     bool
	}{
		{name: "direct allowed", remote: "10.1.2.3:5555", want: "10.1.2.3", ok: true},
		{name: "direct refused", remote: "127.0.0.2:5555", want: "127.0.0.2"},
		{name: "xff ignored from untrusted peer", remote: "127.0.0.2:1", xff: []string{"10.0.0.1"}, want: "127.0.0.2"},
		{name: "xff from allowed but untrusted peer", remote: "10.0.0.9:1", xff: []string{"203.0.113.1"}, want: "10.0.0.9", ok: true},
		{name: "xff believed from trusted proxy", remote: "192.0.2.1:1", xff: []string{"10.9.9.9"}, want: "10.9.9.9", ok: true},
		{name: "right-most untrusted hop wins", remote: "192.0.2.1:1", xff: []string{"10.0.0.1, 203.0.113.7, 192.0.2.8"}, want: "203.0.113.7"},
		{name: "several headers", remote: "192.0.2.1:1", xff: []string{"203.0.113.7", "10.0.0.5"}, want: "10.0.0.5", ok: true},
		{name: "proxy without xff", remote: "192.0.2.1:1", want: "192.0.2.1"},
		{name: "garbage hop", remote: "192.0.2.1:1", xff: []string{"10.0.0.1, nonsense"}, want: "invalid IP"},
		{name: "v4-mapped v6 peer", remote: "[::ffff:10.0.0.1]:1", want: "10.0.0.1", ok: true},
		{name: "ipv6", remote: "[2001:db8::1]:1", want: "2001:db8::1", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "/v2/", nil)
			r.RemoteAddr = tt.remote
			for _, x := range tt.xff {
				r.Header.Add("X-Forwarded-For", x)
			}
			got := a.clientAddr(r)
			if got.String() != tt.want || a.allowed(got) != tt.ok {
				t.Errorf("client %s allowed %v, want %s %v", got, a.allowed(got), tt.want, tt.ok)
			}
		})
	}
}

func TestMiddlewareRefusals(t *testing.T) {
	t.Parallel()
	a, err := New(Config{Allow: prefixes(t, "127.0.0.1/32")}, WithMaxURL(100))
	if err != nil {
		t.Fatal(err)
	}
	var reached atomic.Int32
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	do := func(remote, path string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("127.0.0.2:9", "/v2/library/x/manifests/latest"); w.Code != 403 || !strings.Contains(w.Body.String(), "DENIED") {
		t.Errorf("outside the allow-list: %d %s", w.Code, w.Body)
	}
	if w := do("127.0.0.1:9", "/v2/"+strings.Repeat("a", 200)); w.Code != http.StatusRequestURITooLong {
		t.Errorf("long URL: %d", w.Code)
	}
	if w := do("127.0.0.1:9", "/v2/"); w.Code != 200 || reached.Load() != 1 {
		t.Errorf("allowed: %d, reached %d", w.Code, reached.Load())
	}
	// No logins configured: /token is not ours and /v2/ needs nothing.
	if w := do("127.0.0.1:9", "/token"); reached.Load() != 2 {
		t.Errorf("/token without htpasswd was answered by access (%d)", w.Code)
	}
}

func TestPerClientLimit(t *testing.T) {
	t.Parallel()
	a, err := New(Config{}, WithMaxRequestsPerClient(2))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { entered <- struct{}{}; <-release }))
	do := func(remote string) int {
		r := httptest.NewRequest("GET", "/v2/x/blobs/sha256:00", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	var done sync.WaitGroup
	for range 2 {
		done.Go(func() { do("10.0.0.1:1") })
	}
	<-entered
	<-entered
	if c := do("10.0.0.1:2"); c != http.StatusTooManyRequests {
		t.Errorf("third request in flight: %d, want 429", c)
	}
	done.Go(func() { do("10.0.0.2:1") }) // another client is not affected
	<-entered
	close(release)
	done.Wait()
	if c := do("10.0.0.1:3"); c != 200 {
		t.Errorf("after the others finished: %d", c)
	}
}

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"myorg/*", "myorg/app", true},
		{"myorg/*", "myorg/team/app", true},
		{"myorg/*", "myorgx/app", false},
		{"myorg/*", "other/myorg/app", false},
		{"myorg/app", "myorg/app", true},
		{"myorg/app", "myorg/app2", false},
		{"*", "anything/at/all", true},
		{"*/secret", "team/secret", true},
		{"*/secret", "team/secrets", false},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxc", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func writeHtpasswd(t *testing.T, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# regcache test users\n\n")
	for u, pw := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(u + ":" + string(h) + "\n")
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestUserPatterns(t *testing.T) {
	t.Parallel()
	ht := writeHtpasswd(t, map[string]string{"alice": "a", "bob": "b", "carol": "c"})
	a, err := New(Config{Htpasswd: ht, Private: PrivateAuthenticated,
		Users:     map[string][]string{"alice": {"team/*", "ghcr.io/acme/*"}, "bob": {}},
		Upstreams: []Upstream{{Name: "docker.io", URL: "http://127.0.0.1:9"}, {Name: "ghcr.io", URL: "http://127.0.0.1:9"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		user, up, repo string
		want           bool
	}{
		{"alice", "docker.io", "team/secret", true},
		{"alice", "docker.io", "other/secret", false},
		{"alice", "ghcr.io", "team/secret", false}, // unqualified patterns are the default upstream's
		{"alice", "ghcr.io", "acme/tool", true},
		{"bob", "docker.io", "team/secret", false},
		{"carol", "docker.io", "anything", true}, // no patterns: everything
	}
	for _, tt := range tests {
		if got := a.userMay(tt.user, tt.up, tt.repo); got != tt.want {
			t.Errorf("userMay(%s, %s, %s) = %v, want %v", tt.user, tt.up, tt.repo, got, tt.want)
		}
	}
	if _, err := New(Config{Htpasswd: ht, Users: map[string][]string{"mallory": {"x/*"}}}); err == nil {
		t.Error("a pattern for a user missing from htpasswd was accepted")
	}
	if _, err := New(Config{Users: map[string][]string{"alice": {"x/*"}}}); err == nil {
		t.Error("users without htpasswd were accepted")
	}
}

func TestHtpasswd(t *testing.T) {
	t.Parallel()
	if _, err := parseHtpasswd([]byte("alice:$apr1$abc$def\n")); err == nil {
		t.Error("an MD5 hash was accepted")
	}
	if _, err := parseHtpasswd([]byte("no-colon\n")); err == nil {
		t.Error("a line without a hash was accepted")
	}
	path := writeHtpasswd(t, map[string]string{"alice": "pw1"})
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	key, err := newUserKey()
	if err != nil {
		t.Fatal(err)
	}
	h, err := loadHtpasswdKeyed(path, key, discard(), clock)
	if err != nil {
		t.Fatal(err)
	}
	first := h.verify("alice", "pw1")
	again := h.verify("alice", "pw1") // remembered this time
	if !first || !again {
		t.Error("right password refused")
	}
	if h.verify("alice", "wrong") || h.verify("nobody", "pw1") || h.verify("alice", "") {
		t.Error("wrong credentials accepted")
	}
	// Rotate the file: the old password stops working once it is seen.
	h2, _ := bcrypt.GenerateFromPassword([]byte("pw2"), bcrypt.MinCost)
	if err := os.WriteFile(path, []byte("alice:"+string(h2)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(path, future, future)
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if h.verify("alice", "pw1") {
		t.Error("old password still accepted after the file changed")
	}
	if !h.verify("alice", "pw2") {
		t.Error("new password refused")
	}
	// A broken file keeps the previous users.
	os.WriteFile(path, []byte("garbage\n"), 0o600)
	future = future.Add(time.Minute)
	os.Chtimes(path, future, future)
	mu.Lock()
	now = now.Add(2 * time.Second)
	mu.Unlock()
	if !h.verify("alice", "pw2") {
		t.Error("a broken htpasswd dropped the users")
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	ht := writeHtpasswd(t, map[string]string{"alice": "secret-a"})
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a, err := New(Config{Htpasswd: ht}, WithClock(clock), WithTokenTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	get := func(path string, set func(*http.Request)) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = "127.0.0.1:1"
		r.Host = "mirror.example:5000"
		if set != nil {
			set(r)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	// The login probe.
	w := get("/v2/", nil)
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="http://mirror.example:5000/token",service="regcache"` {
		t.Fatalf("/v2/ without credentials: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if w := get("/v2/", func(r *http.Request) { r.SetBasicAuth("alice", "secret-a") }); w.Code != 200 {
		t.Errorf("/v2/ with basic: %d", w.Code)
	}
	if w := get("/v2/", func(r *http.Request) { r.SetBasicAuth("alice", "nope") }); w.Code != 401 {
		t.Errorf("/v2/ with a wrong password: %d", w.Code)
	}
	// Token flow.
	if w := get("/token?service=regcache&scope=repository:x:pull", func(r *http.Request) { r.SetBasicAuth("alice", "nope") }); w.Code != 401 {
		t.Errorf("token with a wrong password: %d", w.Code)
	}
	tokenOf := func(w *httptest.ResponseRecorder) string {
		t.Helper()
		var body struct {
			Token string `json:"token"`
		}
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Token == "" {
			t.Fatalf("token: %d %s", w.Code, w.Body)
		}
		return body.Token
	}
	tok := tokenOf(get("/token?service=regcache", func(r *http.Request) { r.SetBasicAuth("alice", "secret-a") }))
	anon := tokenOf(get("/token?service=regcache", nil))
	if !strings.HasPrefix(tok, tokenPrefix) || tok == anon {
		t.Errorf("tokens %q / %q", tok, anon)
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	if w := get("/v2/", bearer(tok)); w.Code != 200 {
		t.Errorf("/v2/ with the token: %d", w.Code)
	}
	if id := a.identify(withAuth("Bearer "+tok), netip.Addr{}); id.user != "alice" || id.err != nil {
		t.Errorf("token identity %+v", id)
	}
	if id := a.identify(withAuth("Bearer "+anon), netip.Addr{}); id.user != "" || id.err != nil || !id.presented {
		t.Errorf("anonymous token identity %+v", id)
	}
	// Tampering: another user's name under the same signature.
	p, sig, _ := strings.Cut(strings.TrimPrefix(tok, tokenPrefix), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(p)
	forged := tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), "alice", "admin", 1))) + "." + sig
	if id := a.identify(withAuth("Bearer "+forged), netip.Addr{}); id.err == nil {
		t.Error("a forged token was accepted")
	}
	// OAuth2 password grant (containerd).
	r := httptest.NewRequest("POST", "/token", strings.NewReader("grant_type=password&username=alice&password=secret-a&service=regcache&client_id=containerd"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = "127.0.0.1:1"
	pw := httptest.NewRecorder()
	h.ServeHTTP(pw, r)
	if !strings.Contains(pw.Body.String(), `"access_token":"rc1.`) {
		t.Errorf("password grant: %d %s", pw.Code, pw.Body)
	}
	// Expiry.
	mu.Lock()
	now = now.Add(61 * time.Second)
	mu.Unlock()
	if w := get("/v2/", bearer(tok)); w.Code != 401 {
		t.Errorf("/v2/ with an expired token: %d", w.Code)
	}
}

func withAuth(v string) *http.Request {
	r := httptest.NewRequest("GET", "/v2/", nil)
	r.Header.Set("Authorization", v)
	return r
}

// fakeUpstream answers tags lists: 200 for public repositories, 401 for the
// rest, or 503 when down.
type fakeUpstream struct {
	public map[string]bool
	down   atomic.Bool
	hits   atomic.Int32
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	if f.down.Load() {
		w.WriteHeader(503)
		return
	}
	repo := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v2/"), "/tags/list")
	if r.Header.Get("Authorization") != "" {
		w.WriteHeader(400) // the check must be anonymous
		return
	}
	if !f.public[repo] {
		w.WriteHeader(401)
		return
	}
	w.Write([]byte(`{"name":"` + repo + `","tags":["latest"]}`))
}

func TestPublicCheck(t *testing.T) {
	t.Parallel()
	f := &fakeUpstream{public: map[string]bool{"library/pub": true}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ht := writeHtpasswd(t, map[string]string{"alice": "a", "bob": "b"})
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ups := []Upstream{{Name: "docker.io", URL: srv.URL, Credentialed: true}, {Name: "anon.example", URL: srv.URL}}
	up, anonUp := "docker.io", "anon.example"

	type want struct{ anon, alice, bob int }
	for _, mode := range []struct {
		policy      string
		pub, secret want
	}{
		{PrivateDeny, want{200, 200, 200}, want{403, 403, 403}},
		{PrivateAuthenticated, want{200, 200, 200}, want{401, 200, 403}},
		{PrivateAllow, want{200, 200, 200}, want{200, 200, 200}},
	} {
		t.Run(mode.policy, func(t *testing.T) {
			a, err := New(Config{Htpasswd: ht, Private: mode.policy, Users: map[string][]string{"alice": {"team/*"}, "bob": {"other/*"}},
				Upstreams: ups}, WithClock(clock), WithRemember(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			check := func(repo, u, user string, wantStatus int) {
				t.Helper()
				r := httptest.NewRequest("GET", "/v2/"+repo+"/manifests/latest", nil)
				r.Host = "m:1"
				if user != "" {
					r.SetBasicAuth(user, user[:1])
				}
				w := httptest.NewRecorder()
				status := 200
				if err := a.Authorize(w, r, u, repo); err != nil {
					status = err.(interface{ HTTPStatus() int }).HTTPStatus()
				}
				if status != wantStatus {
					t.Errorf("%s as %q: %d, want %d", repo, user, status, wantStatus)
				}
				if status == 401 && !strings.Contains(w.Header().Get("WWW-Authenticate"), `scope="repository:`+repo+`:pull"`) {
					t.Errorf("401 without a challenge: %q", w.Header().Get("WWW-Authenticate"))
				}
			}
			for _, c := range []struct {
				repo string
				w    want
			}{{"library/pub", mode.pub}, {"team/secret", mode.secret}} {
				check(c.repo, up, "", c.w.anon)
				check(c.repo, up, "alice", c.w.alice)
				check(c.repo, up, "bob", c.w.bob)
				// An upstream read without credentials holds nothing private.
				check(c.repo, anonUp, "", 200)
			}
		})
	}
	t.Run("remembered, stale when down, closed when unknown", func(t *testing.T) {
		a, err := New(Config{Upstreams: ups}, WithClock(clock), WithRemember(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		ctx := t.Context()
		f.hits.Store(0)
		for range 3 {
			if ok, err := a.isPublic(ctx, "docker.io", "library/pub"); !ok || err != nil {
				t.Fatalf("public: %v %v", ok, err)
			}
		}
		if n := f.hits.Load(); n != 1 {
			t.Errorf("%d upstream checks for 3 requests within the memory window", n)
		}
		f.down.Store(true)
		defer f.down.Store(false)
		mu.Lock()
		now = now.Add(2 * time.Minute)
		mu.Unlock()
		if ok, err := a.isPublic(ctx, "docker.io", "library/pub"); !ok || err != nil {
			t.Errorf("upstream down: last answer not used: %v %v", ok, err)
		}
		if ok, err := a.isPublic(ctx, "docker.io", "library/never-seen"); ok || err == nil {
			t.Errorf("upstream down, no answer known: %v %v (want a refusal)", ok, err)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestMissingRepositoryIsNotFound: a repository the upstream answers 404
// for, even to the mirror's credentials (deleted, or access lost), gets an
// honest 404 from Authorize itself, so nothing cached for it (perhaps
// private) is served, and containerd still falls back on a 404.
func TestMissingRepositoryIsNotFound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.Write([]byte(`{"errors":[{"code":"NAME_UNKNOWN"}]}`))
	}))
	defer srv.Close()
	c, err := upstream.New("docker.io", srv.URL, auth.Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Private: PrivateDeny, Upstreams: []Upstream{{Name: "docker.io", URL: srv.URL, Credentialed: true, Client: c}}})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v2/team/secret/manifests/sha256:"+strings.Repeat("a", 64), nil)
	err = a.Authorize(httptest.NewRecorder(), r, "docker.io", "team/secret")
	var oe *oci.Error
	if !errors.As(err, &oe) || oe.Code != oci.ErrNameUnknown || oe.HTTPStatus() != 404 {
		t.Fatalf("Authorize = %v, want 404 NAME_UNKNOWN", err)
	}
}

// TestDigestOnlyPublicRepository: a repository pushed by digest only has
// no tag list on Distribution (404), yet its manifests are public: the
// probe asks about the requested reference and lets the client in.
func TestDigestOnlyPublicRepository(t *testing.T) {
	dgst := "sha256:" + strings.Repeat("b", 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && r.URL.Path == "/v2/team/app/manifests/"+dgst {
			w.Header().Set("Docker-Content-Digest", dgst)
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			return
		}
		w.WriteHeader(404)
		w.Write([]byte(`{"errors":[{"code":"NAME_UNKNOWN"}]}`))
	}))
	defer srv.Close()
	c, err := upstream.New("docker.io", srv.URL, auth.Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Private: PrivateDeny, Upstreams: []Upstream{{Name: "docker.io", URL: srv.URL, Credentialed: true, Client: c}}})
	if err != nil {
		t.Fatal(err)
	}
	up := "docker.io"
	r := httptest.NewRequest("GET", "/v2/team/app/manifests/"+dgst, nil)
	if err := a.Authorize(httptest.NewRecorder(), r, up, "team/app"); err != nil {
		t.Fatalf("digest-only public repository refused: %v", err)
	}
	// Another reference of the same repository that is not there: 404.
	other := "sha256:" + strings.Repeat("c", 64)
	r = httptest.NewRequest("GET", "/v2/team/app/manifests/"+other, nil)
	// The repository is known public now, so the policy lets the request
	// through and the registry answers its own 404.
	if err := a.Authorize(httptest.NewRecorder(), r, up, "team/app"); err != nil {
		t.Fatalf("known-public repository refused for another reference: %v", err)
	}
}

// TestAuthorizeKnownPublicAllocates: authorizing a request for a
// repository whose public answer is remembered is a map lookup: it parses
// no path and builds no key (issue 28).
func TestAuthorizeKnownPublicAllocates(t *testing.T) {
	f := &fakeUpstream{public: map[string]bool{"library/pub": true}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	a, err := New(Config{Upstreams: []Upstream{{Name: "docker.io", URL: srv.URL, Credentialed: true}}}, WithRemember(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v2/library/pub/manifests/latest", nil)
	w := httptest.NewRecorder()
	if err := a.Authorize(w, r, "docker.io", "library/pub"); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(100, func() {
		if err := a.Authorize(w, r, "docker.io", "library/pub"); err != nil {
			t.Fatal(err)
		}
	})
	if n > 0 {
		t.Errorf("Authorize of a remembered public repository: %.0f allocations, want 0", n)
	}
	if hits := f.hits.Load(); hits != 1 {
		t.Errorf("%d upstream checks, want 1", hits)
	}
}
