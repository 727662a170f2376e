// Package auth authenticates regcache to upstream registries: an
// http.RoundTripper that answers Basic and Docker-style Bearer challenges,
// and caches bearer tokens per scope until they expire so that a busy mirror
// asks the token endpoint once per repository, not once per request.
package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/regcache/regcache/internal/oci"
)

// maxTokens bounds the token cache (one entry per repository scope).
const maxTokens = 10000

// tokenTimeout bounds one token request, shared by every request waiting
// for that scope.
const tokenTimeout = 30 * time.Second

// Credentials are an upstream account. Empty means anonymous.
type Credentials struct {
	Username string
	Password string
	// IdentityToken is an OAuth2 refresh token (a credential helper's
	// answer with Username "<token>"): it is exchanged at the token
	// realm, never sent to the registry.
	IdentityToken string
}

func (c Credentials) empty() bool {
	return c.Username == "" && c.Password == "" && c.IdentityToken == ""
}

// Transport adds upstream authentication to requests for one registry host.
// Requests to any other host (a CDN a blob redirects to) go out without
// Authorization.
type Transport struct {
	base     http.RoundTripper
	upstream *url.URL
	creds    Credentials
	source   func() (Credentials, error) // when set, read at each use (rotation)
	helper   *Helper                     // when set, the source; asked again after a refusal
	now      func() time.Time

	mu        sync.Mutex
	chal      challenge // last challenge seen; zero until the first 401
	tokens    map[string]token
	tokenReqs int64
	sf        singleflight.Group
	verdict   Verdict // what the upstream last said of the credentials
}

type token struct {
	value   string
	expires time.Time
}

// Option configures a Transport.
type Option func(*Transport)

// WithCredentialSource reads the credentials at each use instead of once,
// so a rotated password file takes effect without a restart. A source
// error fails the request that needed the credentials.
func WithCredentialSource(fn func() (Credentials, error)) Option {
	return func(t *Transport) { t.source = fn }
}

// WithCredentialHelper takes the credentials from a credential program:
// fetched on first use, kept in memory, fetched again when they are older
// than its TTL or when the upstream or its token realm refuses them. A
// program's failure fails the request that needed the credentials with a
// *HelperError.
func WithCredentialHelper(h *Helper) Option {
	return func(t *Transport) { t.source, t.helper = h.Credentials, h }
}

// Helper is the credential program given with WithCredentialHelper, or nil.
func (t *Transport) Helper() *Helper { return t.helper }

// refreshed reports whether the credential program, told that old were
// refused, now gives other credentials (false without a program, or when
// it ran too lately to ask again).
func (t *Transport) refreshed(old Credentials) (bool, error) {
	if t.helper == nil {
		return false, nil
	}
	t.helper.Reject(old)
	c, err := t.credentials()
	if err != nil {
		return false, err
	}
	return c != old, nil
}

// credentials returns the credentials to present now.
func (t *Transport) credentials() (Credentials, error) {
	if t.source == nil {
		return t.creds, nil
	}
	c, err := t.source()
	if err != nil {
		err = fmt.Errorf("read upstream credentials: %w", err)
		t.judged(false, err.Error())
		return Credentials{}, err
	}
	return c, nil
}

// WithClock sets the time source used for token expiry (tests).
func WithClock(now func() time.Time) Option { return func(t *Transport) { t.now = now } }

// New returns a Transport for the registry at upstream (scheme://host[:port]).
func New(base http.RoundTripper, upstream *url.URL, creds Credentials, opts ...Option) *Transport {
	t := &Transport{base: base, upstream: upstream, creds: creds, now: time.Now, tokens: map[string]token{}}
	for _, o := range opts {
		o(t)
	}
	return t
}

// TokenRequests is how many tokens were fetched so far.
func (t *Transport) TokenRequests() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.tokenReqs
}

type scopeKey struct{}

type tokenKey struct{}

// IsTokenRequest reports whether req is a token request the Transport
// made itself (to the realm of a challenge), for a base transport that
// tells them from registry requests.
func IsTokenRequest(req *http.Request) bool {
	v, _ := req.Context().Value(tokenKey{}).(bool)
	return v
}

// WithScope sets the token scope for requests made with ctx, overriding
// the one derived from the request path.
func WithScope(ctx context.Context, scope string) context.Context {
	return context.WithValue(ctx, scopeKey{}, scope)
}

// scopeOf is the pull scope of a request: the repository in its path.
func scopeOf(req *http.Request) string {
	if s, ok := req.Context().Value(scopeKey{}).(string); ok {
		return s
	}
	p, err := oci.ParsePath(req.URL.Path)
	if err != nil || p.Name == "" {
		return ""
	}
	return "repository:" + p.Name + ":pull"
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.EqualFold(req.URL.Host, t.upstream.Host) {
		if req.Header.Get("Authorization") == "" {
			return t.base.RoundTrip(req)
		}
		r := req.Clone(req.Context())
		r.Header.Del("Authorization")
		return t.base.RoundTrip(r)
	}
	scope := scopeOf(req)
	t.mu.Lock()
	chal := t.chal
	t.mu.Unlock()
	sent := ""
	if chal.scheme != "" {
		h, err := t.authorization(req.Context(), chal, scope, "")
		if err != nil {
			return nil, err
		}
		sent = h
	}
	resp, err := t.send(req, sent)
	t.noteBasic(sent, resp)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	c, ok := challengeOf(resp)
	if !ok {
		return resp, nil
	}
	// Free the connection before asking the realm: with a bound on
	// connections (max_connections: 1) and the realm on the same host,
	// the token request would wait for this one forever.
	hold(resp)
	creds, err := t.credentials()
	if err != nil {
		drain(resp)
		return nil, err
	}
	if c.scheme == "basic" && creds.empty() {
		return resp, nil
	}
	t.mu.Lock()
	t.chal = challenge{scheme: c.scheme, params: map[string]string{"realm": c.params["realm"], "service": c.params["service"]}}
	t.mu.Unlock()
	if s := c.params["scope"]; s != "" && c.scheme == "bearer" {
		scope = s
	}
	h, err := t.authorization(req.Context(), c, scope, sent)
	if err != nil {
		drain(resp)
		return nil, err
	}
	if h != sent {
		drain(resp)
		if resp, err = t.send(req, h); err != nil || resp.StatusCode != http.StatusUnauthorized {
			return resp, err
		}
		hold(resp)
		sent = h
	}
	// What the credentials give was refused: a credential program's
	// answer may have rotated. Ask it again, once for this request.
	again, err := t.refreshed(creds)
	if err != nil {
		drain(resp)
		return nil, err
	}
	if !again {
		return resp, nil
	}
	if h, err = t.authorization(req.Context(), c, scope, sent); err != nil {
		drain(resp)
		return nil, err
	}
	if h == sent {
		return resp, nil
	}
	drain(resp)
	resp, err = t.send(req, h)
	t.noteBasic(h, resp)
	return resp, err
}

func (t *Transport) send(req *http.Request, authz string) (*http.Response, error) {
	if authz == "" {
		return t.base.RoundTrip(req)
	}
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", authz)
	return t.base.RoundTrip(r)
}

// authorization returns the Authorization value for the challenge and scope.
// rejected is a value the upstream just refused; a cached token equal to it
// is fetched again.
func (t *Transport) authorization(ctx context.Context, c challenge, scope, rejected string) (string, error) {
	if c.scheme == "basic" {
		creds, err := t.credentials()
		if err != nil {
			return "", err
		}
		if creds.Username == "" && creds.Password == "" {
			return "", nil // anonymous, or an identity token, which is for a realm
		}
		r := &http.Request{Header: http.Header{}}
		r.SetBasicAuth(creds.Username, creds.Password)
		return r.Header.Get("Authorization"), nil
	}
	t.mu.Lock()
	tok, ok := t.tokens[scope]
	t.mu.Unlock()
	if ok && t.now().Before(tok.expires) && "Bearer "+tok.value != rejected {
		return "Bearer " + tok.value, nil
	}
	v, err, _ := t.sf.Do(scope, func() (any, error) {
		return t.fetchToken(ctx, c, scope)
	})
	if err != nil {
		return "", err
	}
	return "Bearer " + v.(token).value, nil
}

// TokenError is a failure of the token endpoint.
type TokenError struct {
	Realm      string
	StatusCode int // 0 when the endpoint could not be reached
	RetryAfter string
	Err        error
}

func (e *TokenError) Error() string {
	if e.StatusCode != 0 {
		return fmt.Sprintf("token endpoint %s answered %d", e.Realm, e.StatusCode)
	}
	return fmt.Sprintf("token endpoint %s: %v", e.Realm, e.Err)
}

func (e *TokenError) Unwrap() error { return e.Err }

func (t *Transport) fetchToken(ctx context.Context, c challenge, scope string) (token, error) {
	realm, err := url.Parse(c.params["realm"])
	if err != nil || realm.Host == "" {
		return token{}, &TokenError{Realm: c.params["realm"], Err: errors.New("the upstream's challenge has no valid realm")}
	}
	if !realmAllowed(realm, t.upstream) {
		return token{}, &TokenError{Realm: realm.Redacted(), Err: fmt.Errorf("realm is not on the upstream's domain %s (or not https); refusing to send credentials there", t.upstream.Hostname())}
	}
	q := realm.Query()
	if s := c.params["service"]; s != "" {
		q.Set("service", s)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	realm.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, tokenKey{}, true)
	creds, err := t.credentials()
	if err != nil {
		return token{}, err
	}
	resp, err := t.tokenRequest(ctx, realm, creds, c.params["service"], scope)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		// The realm refused the credentials: a credential program's
		// answer may have rotated. Ask it again, once.
		again, herr := t.refreshed(creds)
		if herr != nil {
			drain(resp)
			return token{}, herr
		}
		if again {
			drain(resp)
			creds, _ = t.credentials()
			resp, err = t.tokenRequest(ctx, realm, creds, c.params["service"], scope)
		}
	}
	if err != nil {
		return token{}, &TokenError{Realm: redactURL(realm), Err: err}
	}
	defer drain(resp)
	if !creds.empty() {
		t.noteToken(redactURL(realm), scope, resp.StatusCode)
	}
	if resp.StatusCode != http.StatusOK {
		return token{}, &TokenError{Realm: redactURL(realm), StatusCode: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	}
	var body struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int       `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return token{}, &TokenError{Realm: redactURL(realm), Err: fmt.Errorf("decode token response: %w", err)}
	}
	v := body.Token
	if v == "" {
		v = body.AccessToken
	}
	if v == "" {
		return token{}, &TokenError{Realm: redactURL(realm), Err: errors.New("token response holds no token")}
	}
	// The spec's default lifetime is 60s. Renew a little early so a token
	// never expires between the check and the upstream's.
	life := time.Duration(body.ExpiresIn) * time.Second
	if life < 60*time.Second {
		life = 60 * time.Second
	}
	tok := token{value: v, expires: t.now().Add(life - min(life/10, 30*time.Second))}
	t.mu.Lock()
	if len(t.tokens) >= maxTokens { // clients can name any repository: keep the map bounded
		now := t.now()
		for k, v := range t.tokens {
			if !now.Before(v.expires) {
				delete(t.tokens, k)
			}
		}
		if len(t.tokens) >= maxTokens {
			clear(t.tokens)
		}
	}
	t.tokens[scope] = tok
	t.mu.Unlock()
	return tok, nil
}

// tokenRequest asks the realm (its query already set) for a token: a GET
// with basic credentials, or the OAuth2 refresh-token POST for an
// identity token, as the Docker CLI sends it.
func (t *Transport) tokenRequest(ctx context.Context, realm *url.URL, creds Credentials, service, scope string) (*http.Response, error) {
	var req *http.Request
	var err error
	if creds.IdentityToken != "" {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {creds.IdentityToken},
			"service": {service}, "client_id": {"regcache"}}
		if scope != "" {
			form.Set("scope", scope)
		}
		u := *realm
		u.RawQuery = ""
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
		if err == nil && !creds.empty() {
			req.SetBasicAuth(creds.Username, creds.Password)
		}
	}
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.tokenReqs++
	t.mu.Unlock()
	return t.base.RoundTrip(req)
}

func redactURL(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.Redacted()
}

// hold reads a (small) error body into memory and closes the original,
// so its connection is free while the response is still to be answered.
func hold(resp *http.Response) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// Forget drops every cached token and a credential program's answer, so
// the next request fetches new ones (after a credential rotation, say).
func (t *Transport) Forget() {
	if t.helper != nil {
		t.helper.Forget()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.tokens)
}
