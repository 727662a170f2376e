package access

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/internal/oci"
)

// Service is the service name in regcache's challenges and tokens.
const Service = "regcache"

// tokenPrefix starts every token regcache issues, so a log scan can find
// any that leaked.
const tokenPrefix = "rc1."

// identity is who a request comes from.
type identity struct {
	user      string        // "" for anonymous
	presented bool          // credentials or a token (anonymous tokens too) came with the request
	err       error         // presented but not valid
	throttled time.Duration // credentials not checked: the address failed too often; retry after
}

type identityKey struct{}

// User is the login the request came with ("" for anonymous), once the
// middleware identified it.
func (a *Access) User(r *http.Request) string {
	id, _ := r.Context().Value(identityKey{}).(identity)
	return id.user
}

var errBadLogin = errors.New("incorrect username or password")

// identify reads the request's Authorization header: Basic credentials of
// an htpasswd user, or a Bearer token from /token. Without logins
// configured every request is anonymous.
func (a *Access) identify(r *http.Request, client netip.Addr) identity {
	users := a.cur().users
	if users == nil {
		return identity{}
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return identity{}
	}
	if user, pw, ok := r.BasicAuth(); ok {
		return a.login(client, user, pw)
	}
	if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
		c, err := a.signer.verify(strings.TrimSpace(tok), a.now())
		if err != nil {
			return identity{presented: true, err: err}
		}
		if c.Sub != "" {
			fp, ok := users.fingerprint(c.Sub)
			switch {
			case !ok:
				return identity{presented: true, err: errors.New("the token's user no longer exists")}
			case !hmac.Equal([]byte(fp), []byte(c.Pwd)):
				return identity{presented: true, err: errors.New("the user's password changed since this token was issued; log in again")}
			}
		}
		return identity{user: c.Sub, presented: true}
	}
	return identity{presented: true, err: errors.New("unsupported Authorization scheme (want Basic or Bearer)")}
}

// login checks a user's password, unless the client's address failed too
// often lately (then nothing is checked and the client is told to wait).
func (a *Access) login(client netip.Addr, user, pw string) identity {
	users := a.cur().users
	if users.remembered(user, pw) { // checked within the minute: no bcrypt, no limit
		return identity{user: user, presented: true}
	}
	if wait := a.guard.wait(client); wait > 0 {
		return identity{presented: true, throttled: wait}
	}
	if wait := a.guard.waitUser(user); wait > 0 {
		return identity{presented: true, throttled: wait}
	}
	if !a.guard.acquire(client, bcryptWait) {
		return identity{presented: true, throttled: time.Second}
	}
	defer a.guard.release(client)
	if wait := a.guard.wait(client); wait > 0 { // failures counted while this one waited
		return identity{presented: true, throttled: wait}
	}
	if users.remembered(user, pw) { // the same credentials passed while this one waited
		return identity{user: user, presented: true}
	}
	ok, busy := users.check(user, pw)
	if busy { // no bcrypt slot in time: nobody's fault, nothing counted
		return identity{presented: true, throttled: time.Second}
	}
	if !ok {
		a.guard.fail(client)
		a.guard.failUser(user)
		return identity{presented: true, err: errBadLogin}
	}
	a.guard.ok(client)
	a.guard.okUser(user)
	return identity{user: user, presented: true}
}

func (a *Access) identityOf(r *http.Request) identity {
	if id, ok := r.Context().Value(identityKey{}).(identity); ok {
		return id
	}
	if r.Header.Get("Authorization") == "" {
		return identity{} // what identify answers without credentials
	}
	return a.identify(r, a.clientAddr(r))
}

// throttledError answers a client whose address failed too many logins.
func throttledError(wait time.Duration) *oci.Error {
	secs := int(wait/time.Second) + 1
	return &oci.Error{Code: oci.ErrTooManyRequests, RetryAfter: fmt.Sprint(secs),
		Message: fmt.Sprintf("too many failed logins from your address; try again in %ds", secs)}
}

// challenge answers 401 with a Bearer challenge pointing at /token, for
// scope repository:<name>:pull when name is set. The caller writes the
// returned error.
func (a *Access) challenge(w http.ResponseWriter, r *http.Request, name string, cause error) *oci.Error {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); (p == "http" || p == "https") && a.fromTrustedProxy(r) {
		scheme = p
	}
	host := strings.Map(func(c rune) rune {
		if c <= ' ' || c == '"' || c == '\\' || c > '~' {
			return -1
		}
		return c
	}, r.Host)
	v := fmt.Sprintf(`Bearer realm="%s://%s/token",service="%s"`, scheme, host, Service)
	if name != "" {
		v += fmt.Sprintf(`,scope="repository:%s:pull"`, name)
	}
	if cause == nil && r.Header.Get("Authorization") != "" {
		v += `,error="insufficient_scope"`
	}
	w.Header().Set("WWW-Authenticate", v)
	msg := "authentication required"
	if cause != nil {
		msg = cause.Error()
	}
	return oci.Errorf(oci.ErrUnauthorized, "%s", msg)
}

// serveToken is the token realm of Docker's token flow
// (https://distribution.github.io/distribution/spec/auth/token/): GET with
// Basic credentials, or POST with the OAuth2 password grant
// (https://distribution.github.io/distribution/spec/auth/oauth/). No
// credentials give an anonymous token, as Docker Hub does.
func (a *Access) serveToken(w http.ResponseWriter, r *http.Request, client netip.Addr) {
	w.Header().Set("Cache-Control", "no-store")
	user, pw, hasCreds := r.BasicAuth()
	switch r.Method {
	case http.MethodGet:
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			tokenError(w, http.StatusBadRequest, "invalid_request", "unreadable form")
			return
		}
		if gt := r.PostForm.Get("grant_type"); gt != "password" {
			// Clients fall back to GET on 400 (containerd does).
			tokenError(w, http.StatusBadRequest, "unsupported_grant_type", "only the password grant is supported; use GET with basic auth")
			return
		}
		user, pw, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
	default:
		w.Header().Set("Allow", "GET, POST")
		tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "use GET or POST")
		return
	}
	if hasCreds {
		// A GET's Basic credentials were checked once already, by the
		// middleware; a POST's form is checked here.
		id := a.identityOf(r)
		if r.Method == http.MethodPost {
			id = a.login(client, user, pw)
		}
		if id.throttled > 0 {
			throttledError(id.throttled).Write(w, r)
			return
		}
		if id.err != nil || id.user != user {
			a.log.Warn("client login refused", slog.String("user", user), slog.String("client", client.String()))
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm=%q`, Service))
			oci.Errorf(oci.ErrUnauthorized, "%s", errBadLogin).Write(w, r)
			return
		}
	} else {
		user = ""
	}
	fp, _ := a.cur().users.fingerprint(user)
	now := a.now()
	tok, err := a.signer.issue(claims{Sub: user, Pwd: fp, Aud: Service, Iat: now.Unix(), Exp: now.Add(a.tokenTTL).Unix()})
	if err != nil {
		tokenError(w, http.StatusInternalServerError, "server_error", "cannot issue a token")
		return
	}
	if user != "" {
		a.log.Info("client login", slog.String("user", user), slog.String("client", client.String()))
	}
	body, _ := json.Marshal(map[string]any{
		"token": tok, "access_token": tok, "expires_in": int(a.tokenTTL / time.Second),
		"issued_at": now.UTC().Format(time.RFC3339),
	})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// claims are a token's content.
type claims struct {
	Sub string `json:"sub,omitempty"` // user; "" for an anonymous token
	// Pwd is the fingerprint of the user's htpasswd entry at issue: a
	// changed password ends the token.
	Pwd string `json:"pwd,omitempty"`
	Aud string `json:"aud"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
	Jti string `json:"jti"`
}

// signer issues and verifies HMAC-SHA256 tokens with a key made at start:
// tokens die with the process, and clients simply log in again.
type signer struct{ key []byte }

func newSigner() (*signer, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	return &signer{key: key}, nil
}

func (s *signer) mac(msg []byte) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(msg)
	return m.Sum(nil)
}

func (s *signer) issue(c claims) (string, error) {
	jti := make([]byte, 12)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	c.Jti = base64.RawURLEncoding.EncodeToString(jti)
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	p := base64.RawURLEncoding.EncodeToString(payload)
	return tokenPrefix + p + "." + base64.RawURLEncoding.EncodeToString(s.mac([]byte(tokenPrefix+p))), nil
}

var errBadToken = errors.New("invalid or expired token; log in again")

func (s *signer) verify(tok string, now time.Time) (claims, error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return claims{}, errBadToken
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return claims{}, errBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac([]byte(tokenPrefix+p))) {
		return claims{}, errBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(p)
	if err != nil {
		return claims{}, errBadToken
	}
	var c claims
	if json.Unmarshal(payload, &c) != nil || c.Aud != Service || now.Unix() >= c.Exp {
		return claims{}, errBadToken
	}
	return c, nil
}

// htpasswd holds bcrypt users from a file, loaded again (at most once a
// second) when the file changes. Successful checks are remembered for a
// minute under an HMAC of the credentials, so clients sending Basic auth
// with every request do not cost a bcrypt each.
type htpasswd struct {
	path string
	log  *slog.Logger
	now  func() time.Time
	key  []byte

	mu      sync.Mutex
	hashes  map[string][]byte
	cost    int // the highest cost among hashes: the dummy's
	modTime time.Time
	checked time.Time
	good    map[[32]byte]time.Time

	compares atomic.Int64 // bcrypt comparisons of real hashes (tests)
}

// dummyHash is compared against for unknown users, so a refusal takes as
// long whether or not the user exists: it has the cost of the file's own
// hashes (htpasswd -B uses 5, bcrypt's default is 10; a dummy of the wrong
// cost tells known users from unknown ones by time).
func dummyHash(cost int) []byte {
	dummyMu.Lock()
	defer dummyMu.Unlock()
	if h, ok := dummies[cost]; ok {
		return h
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("regcache-dummy"), cost)
	dummies[cost] = h
	return h
}

var (
	dummyMu sync.Mutex
	dummies = map[int][]byte{}
)

// newUserKey makes the key of the entries' fingerprints (and of
// remembered logins).
func newUserKey() ([]byte, error) {
	key := make([]byte, 32)
	_, err := rand.Read(key)
	return key, err
}

// loadHtpasswdKeyed loads the file with the given key. An Access keeps one
// key for its life, so a reload that reads the file again gives unchanged
// entries the same fingerprints, and their tokens stay valid.
func loadHtpasswdKeyed(path string, key []byte, log *slog.Logger, now func() time.Time) (*htpasswd, error) {
	h := &htpasswd{path: path, log: log, now: now, key: key}
	if err := h.load(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *htpasswd) load() error {
	fi, err := os.Stat(h.path)
	if err != nil {
		return fmt.Errorf("access: htpasswd: %w", err)
	}
	data, err := os.ReadFile(h.path)
	if err != nil {
		return fmt.Errorf("access: htpasswd: %w", err)
	}
	hashes, err := parseHtpasswd(data)
	if err != nil {
		return fmt.Errorf("access: htpasswd %s: %w", h.path, err)
	}
	cost := bcrypt.MinCost
	for _, hash := range hashes {
		if c, err := bcrypt.Cost(hash); err == nil && c > cost {
			cost = c
		}
	}
	h.hashes, h.cost, h.modTime, h.good = hashes, cost, fi.ModTime(), map[[32]byte]time.Time{}
	dummyHash(cost) // made now, not during the first refusal
	return nil
}

// fingerprint is a short keyed hash of the user's htpasswd entry (ok is
// false for an unknown user). A token carries it; a changed entry ends the
// token. The empty user has the empty fingerprint.
func (h *htpasswd) fingerprint(user string) (string, bool) {
	if h == nil || user == "" {
		return "", user == ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refresh()
	hash, ok := h.hashes[user]
	if !ok {
		return "", false
	}
	m := hmac.New(sha256.New, h.key)
	m.Write(hash)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:12]), true
}

// parseHtpasswd reads user:bcrypt-hash lines; blank lines and # comments
// are skipped. Other hash kinds (MD5, SHA1, crypt) are refused: they are
// too cheap to brute-force.
func parseHtpasswd(data []byte) (map[string][]byte, error) {
	m := map[string][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: want user:hash", n)
		}
		if !strings.HasPrefix(hash, "$2y$") && !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") {
			return nil, fmt.Errorf("line %d: user %q: only bcrypt hashes are accepted (htpasswd -B)", n, user)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: %v", n, user, err)
		}
		m[user] = []byte(hash)
	}
	return m, sc.Err()
}

// refresh loads the file again if it changed; a file that no longer
// parses is logged and the old users kept.
func (h *htpasswd) refresh() {
	now := h.now()
	if now.Sub(h.checked) < time.Second {
		return
	}
	h.checked = now
	fi, err := os.Stat(h.path)
	if err != nil || fi.ModTime().Equal(h.modTime) {
		return
	}
	if err := h.load(); err != nil {
		h.modTime = fi.ModTime()
		h.log.Error("htpasswd changed but does not load; keeping the previous users", slog.Any("error", err))
		return
	}
	h.log.Info("htpasswd reloaded", slog.Int("users", len(h.hashes)))
}

// count is the number of users in the file.
func (h *htpasswd) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.hashes)
}

func (h *htpasswd) has(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refresh()
	_, ok := h.hashes[user]
	return ok
}

// bcryptWait is how long a password check waits for a slot.
const bcryptWait = 5 * time.Second

// bcryptSlots bounds concurrent password checks to half the cores.
var bcryptSlots = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))

// goodKey is the key of a successful check in h.good.
func (h *htpasswd) goodKey(user, pw string) [32]byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(pw))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// remembered reports whether these credentials passed a check within the
// last minute (and the user's entry is unchanged since).
func (h *htpasswd) remembered(user, pw string) bool {
	k := h.goodKey(user, pw)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refresh()
	_, ok := h.hashes[user]
	t, hit := h.good[k]
	return ok && hit && h.now().Before(t)
}

// verify reports whether the password is the user's (a check that found
// no bcrypt slot in time is a refusal).
func (h *htpasswd) verify(user, pw string) bool {
	ok, _ := h.check(user, pw)
	return ok
}

// check is verify that tells a refusal from no bcrypt slot in time (busy).
func (h *htpasswd) check(user, pw string) (ok, busy bool) {
	k := h.goodKey(user, pw)

	h.mu.Lock()
	h.refresh()
	hash, known := h.hashes[user]
	cost := h.cost
	if t, hit := h.good[k]; known && hit && h.now().Before(t) {
		h.mu.Unlock()
		return true, false
	}
	h.mu.Unlock()
	// bcrypt is slow on purpose; a flood of wrong passwords must not take
	// every core from the mirror, so at most half of them compare at once.
	// A login that cannot get a slot within a few seconds is refused
	// rather than queued without bound behind a flood.
	select {
	case bcryptSlots <- struct{}{}:
		defer func() { <-bcryptSlots }()
	case <-time.After(bcryptWait):
		return false, true
	}
	if !known {
		_ = bcrypt.CompareHashAndPassword(dummyHash(cost), []byte(pw))
		return false, false
	}
	h.compares.Add(1)
	if bcrypt.CompareHashAndPassword(hash, []byte(pw)) != nil {
		return false, false
	}
	h.mu.Lock()
	if len(h.good) > 10000 {
		clear(h.good)
	}
	if bytes.Equal(h.hashes[user], hash) { // not replaced by a reload meanwhile
		h.good[k] = h.now().Add(time.Minute)
	}
	h.mu.Unlock()
	return true, false
}
