// Package access decides who may pull what from the mirror: a CIDR
// allow-list of client networks (X-Forwarded-For believed only from trusted
// proxies), client logins (htpasswd users, by Basic auth or by regcache's own
// Docker token flow at /token), and the private-repository policy, so that
// content fetched with the mirror's upstream credentials is served only to
// clients allowed it. It plugs into the registry as a middleware (network
// checks, /token, the /v2/ login probe) and the registry's Authorizer
// (per-repository decisions, made after routing and before any I/O).
package access

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// Private-repository policies (Config.Private).
const (
	// PrivateDeny serves a repository to a client only if the upstream
	// serves it anonymously.
	PrivateDeny = "deny"
	// PrivateAuthenticated also serves private repositories to logged-in
	// users whose patterns allow them.
	PrivateAuthenticated = "authenticated"
	// PrivateAllow serves whatever the mirror's credentials can read to
	// every client that passes the allow-list.
	PrivateAllow = "allow"
)

// Config is what the access package needs from the configuration.
type Config struct {
	// Allow lists the client networks allowed; empty allows every client.
	Allow []netip.Prefix
	// TrustedProxies lists the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Htpasswd is a bcrypt htpasswd file of client logins; "" turns logins off.
	Htpasswd string
	// Users optionally limits the private repositories each user may read to
	// the patterns listed ("myorg/*"; "*" matches any characters, "/"
	// included). A user without an entry may read every repository the
	// policy lets logged-in users read.
	Users map[string][]string
	// Private is PrivateDeny (default when empty), PrivateAuthenticated or
	// PrivateAllow.
	Private string
	// Upstreams are the mirrored registries; the first is the default one.
	Upstreams []Upstream
}

// Upstream describes a mirrored registry for the private-repository check.
type Upstream struct {
	// Name is the registry host clients know (the name the registry
	// routes to and Authorize is called with).
	Name string
	// URL is the upstream's base URL, asked anonymously whether it serves
	// a repository to anyone.
	URL string
	// Credentialed is true when the mirror reads this upstream with
	// credentials. Without them everything the mirror can fetch is public,
	// and no check is made.
	Credentialed bool
	// Client is the mirror's own (credentialed) client of the upstream,
	// asked whether a repository the anonymous client cannot see exists at
	// all. Nil: a refused repository is taken as private, never missing.
	Client *upstream.Client
	// Fallback names the upstreams (listed in Config.Upstreams too) that
	// stand in for this one when it fails. Content a credentialed member
	// serves may be private, so a repository of this upstream is public
	// only if every credentialed member serves it anonymously too (or does
	// not have it): the chain is decided against its most privileged member.
	Fallback []string
}

// Access is the mirror's access control. It is safe for concurrent use.
type Access struct {
	rules    atomic.Pointer[rules] // replaced whole by Reload
	log      *slog.Logger
	now      func() time.Time
	guard    *loginGuard
	signer   *signer // made at start; kept across reloads, so tokens stay valid
	userKey  []byte  // of htpasswd entries' fingerprints: kept across reloads too
	tokenTTL time.Duration

	upstreams  map[string]*upstreamState
	defaultUp  string
	rememberOK time.Duration // how long an anonymous-check answer is used without asking again

	maxURL       int
	perClient    int
	clientsMu    sync.Mutex
	clientActive map[netip.Addr]int
}

// rules are the parts of the access control a reload replaces: who may
// connect, who may log in, and what they may pull.
type rules struct {
	allow, trusted []netip.Prefix
	private        string
	users          *htpasswd // nil: no logins
	patterns       map[string][]string
}

// cur is the rules in force.
func (a *Access) cur() *rules { return a.rules.Load() }

type upstreamState struct {
	credentialed bool
	members      []chainMember // the credentialed members of its fallback chain
	anon         *upstream.Client
	cred         *upstream.Client

	mu      sync.Mutex
	answers map[string]publicAnswer // repo → last answer
	flights singleflight.Group
}

// chainMember is a credentialed member of an upstream's fallback chain.
type chainMember struct {
	name string
	st   *upstreamState
}

type publicAnswer struct {
	public  bool
	missing bool // not there even for the mirror's credentials
	at      time.Time
}

// Option configures an Access.
type Option func(*Access)

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(a *Access) { a.log = l } }

// WithClock sets the time source (tests).
func WithClock(now func() time.Time) Option { return func(a *Access) { a.now = now } }

// WithTokenTTL sets how long a token from /token is valid (default 5 minutes).
func WithTokenTTL(d time.Duration) Option { return func(a *Access) { a.tokenTTL = d } }

// WithRemember sets how long the answer of an upstream to "do you serve this
// repository anonymously?" is used before asking again (default 5 minutes).
// While the upstream cannot be asked, the last answer is used however old.
func WithRemember(d time.Duration) Option { return func(a *Access) { a.rememberOK = d } }

// WithMaxURL sets the longest request URI accepted (default 8 KiB); longer
// ones get 414.
func WithMaxURL(n int) Option { return func(a *Access) { a.maxURL = n } }

// WithMaxRequestsPerClient bounds the requests one client address has in
// flight (default 0, unbounded); more get 429. Each request may hold an
// upstream fill open, so this bounds what one client can make the mirror
// fetch at once.
func WithMaxRequestsPerClient(n int) Option { return func(a *Access) { a.perClient = n } }

// New checks cfg and loads the htpasswd file. Users named in cfg.Users must
// be in the htpasswd file.
func New(cfg Config, opts ...Option) (*Access, error) {
	a := &Access{log: slog.New(slog.DiscardHandler), now: time.Now, tokenTTL: 5 * time.Minute,
		upstreams: map[string]*upstreamState{}, rememberOK: 5 * time.Minute, maxURL: 8 << 10,
		clientActive: map[netip.Addr]int{}}
	for _, o := range opts {
		o(a)
	}
	a.guard = newLoginGuard(func() time.Time { return a.now() })
	var err error
	if a.userKey, err = newUserKey(); err != nil {
		return nil, err
	}
	r, err := a.newRules(cfg)
	if err != nil {
		return nil, err
	}
	a.rules.Store(r)
	if a.signer, err = newSigner(); err != nil {
		return nil, err
	}
	for i, u := range cfg.Upstreams {
		if i == 0 {
			a.defaultUp = u.Name
		}
		st := &upstreamState{credentialed: u.Credentialed, cred: u.Client, answers: map[string]publicAnswer{}}
		if u.Credentialed {
			c, err := upstream.New(u.Name, u.URL, auth.Credentials{}, upstream.WithLogger(a.log), upstream.WithRetry(2, 100*time.Millisecond))
			if err != nil {
				return nil, err
			}
			st.anon = c
		}
		a.upstreams[u.Name] = st
	}
	for _, u := range cfg.Upstreams {
		for _, name := range u.Fallback {
			for _, m := range cfg.Upstreams {
				if strings.EqualFold(m.Name, name) && m.Name != u.Name && m.Credentialed {
					st := a.upstreams[u.Name]
					st.members = append(st.members, chainMember{name: m.Name, st: a.upstreams[m.Name]})
				}
			}
		}
	}
	return a, nil
}

// LoginFailures is how many logins were refused for wrong credentials,
// and how many attempts the per-address backoff refused unchecked.
func (a *Access) LoginFailures() (failed, throttled int64) {
	return a.guard.failed.Load(), a.guard.throttled.Load()
}

// Logins reports whether client logins are configured.
func (a *Access) Logins() bool { return a.cur().users != nil }

// newRules checks cfg's rules and loads its htpasswd file.
func (a *Access) newRules(cfg Config) (*rules, error) {
	r := &rules{allow: cfg.Allow, trusted: cfg.TrustedProxies, private: cfg.Private, patterns: cfg.Users}
	switch r.private {
	case "":
		r.private = PrivateDeny
	case PrivateDeny, PrivateAuthenticated, PrivateAllow:
	default:
		return nil, fmt.Errorf("access: invalid private policy %q (want deny, authenticated or allow)", cfg.Private)
	}
	for user, pats := range cfg.Users {
		for _, p := range pats {
			if err := checkPattern(p); err != nil {
				return nil, fmt.Errorf("access: users.%s: %w", user, err)
			}
		}
	}
	if cfg.Htpasswd != "" {
		h, err := loadHtpasswdKeyed(cfg.Htpasswd, a.userKey, a.log, a.now)
		if err != nil {
			return nil, err
		}
		r.users = h
		for user := range cfg.Users {
			if !h.has(user) {
				return nil, fmt.Errorf("access: users: %q is not in %s", user, cfg.Htpasswd)
			}
		}
	} else if len(cfg.Users) > 0 {
		return nil, fmt.Errorf("access: users are listed but no htpasswd file is configured")
	}
	return r, nil
}

// Reload replaces the allow-list, trusted proxies, private policy, htpasswd
// file (read again now) and user patterns with cfg's, all at once, and says
// what changed. On an error nothing is replaced. Upstreams are not
// reloaded. Tokens issued before stay valid for users whose password did
// not change.
func (a *Access) Reload(cfg Config) ([]string, error) {
	next, err := a.newRules(cfg)
	if err != nil {
		return nil, err
	}
	old := a.rules.Swap(next)
	var changed []string
	if !slices.Equal(old.allow, next.allow) {
		changed = append(changed, fmt.Sprintf("access.allow (%d networks)", len(next.allow)))
	}
	if !slices.Equal(old.trusted, next.trusted) {
		changed = append(changed, fmt.Sprintf("access.trusted_proxies (%d networks)", len(next.trusted)))
	}
	if old.private != next.private {
		changed = append(changed, "access.private ("+next.private+")")
	}
	switch {
	case next.users != nil:
		changed = append(changed, fmt.Sprintf("access.htpasswd (%d users)", next.users.count()))
	case old.users != nil:
		changed = append(changed, "access.htpasswd (logins off)")
	}
	if !maps.EqualFunc(old.patterns, next.patterns, slices.Equal[[]string]) {
		changed = append(changed, fmt.Sprintf("access.users (%d users with patterns)", len(next.patterns)))
	}
	return changed, nil
}

// Middleware runs before routing: the allow-list, the request limits, the
// token endpoint and the /v2/ login probe.
func (a *Access) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client := a.clientAddr(r)
		if !a.allowed(client) {
			oci.Errorf(oci.ErrDenied, "this mirror does not serve your network").Write(w, r)
			return
		}
		if len(r.RequestURI) > a.maxURL {
			(&oci.Error{Code: oci.ErrUnsupported, Status: http.StatusRequestURITooLong,
				Message: fmt.Sprintf("request URI longer than %d bytes", a.maxURL)}).Write(w, r)
			return
		}
		if a.perClient > 0 {
			if !a.enter(client) {
				(&oci.Error{Code: oci.ErrTooManyRequests, RetryAfter: "1",
					Message: fmt.Sprintf("more than %d requests in flight from your address", a.perClient)}).Write(w, r)
				return
			}
			defer a.leave(client)
		}
		id := a.identify(r, client)
		if id.throttled > 0 {
			throttledError(id.throttled).Write(w, r)
			return
		}
		if id != (identity{}) {
			// Anonymous needs no copy of the request: identityOf reads a
			// missing identity as anonymous (a copy is a tenth of a warm hit).
			r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
		}
		if a.cur().users != nil {
			if r.URL.Path == "/token" {
				a.serveToken(w, r, client)
				return
			}
			if (r.URL.Path == "/v2/" || r.URL.Path == "/v2") && (id.err != nil || !id.presented) {
				a.challenge(w, r, "", id.err).Write(w, r)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the client's address: the peer's, or, when the peer is a
// trusted proxy, the right-most X-Forwarded-For entry that is not itself a
// trusted proxy. An unparsable entry gives the invalid address, which no
// allow-list admits.
func (a *Access) clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := ap.Addr().Unmap()
	if !contains(a.cur().trusted, addr) {
		return addr
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return netip.Addr{}
		}
		addr = h.Unmap()
		if !contains(a.cur().trusted, addr) {
			return addr
		}
	}
	return addr
}

// ClientAddr is the client's address as the allow-list sees it: the
// peer's, or past trusted proxies (clientAddr).
func (a *Access) ClientAddr(r *http.Request) netip.Addr { return a.clientAddr(r) }

// fromTrustedProxy reports whether the peer is a trusted proxy, whose
// X-Forwarded-* headers are believed.
func (a *Access) fromTrustedProxy(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && contains(a.cur().trusted, ap.Addr().Unmap())
}

func (a *Access) allowed(addr netip.Addr) bool {
	return len(a.cur().allow) == 0 || contains(a.cur().allow, addr)
}

func contains(ps []netip.Prefix, addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, p := range ps {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (a *Access) enter(client netip.Addr) bool {
	a.clientsMu.Lock()
	defer a.clientsMu.Unlock()
	if a.clientActive[client] >= a.perClient {
		return false
	}
	a.clientActive[client]++
	return true
}

func (a *Access) leave(client netip.Addr) {
	a.clientsMu.Lock()
	defer a.clientsMu.Unlock()
	if a.clientActive[client]--; a.clientActive[client] <= 0 {
		delete(a.clientActive, client)
	}
}
