package admin

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/httpguard"
)

// auth decides who may change the cache and see private names: the
// admin token when one is configured, loopback otherwise. Wrong tokens
// are counted and slowed down.
type auth struct {
	token             func() string // admin_token in effect; "" for none
	log               *slog.Logger
	guess             *httpguard.Backoff[netip.Addr]
	failed, throttled atomic.Int64
}

// adminFreeGuesses is how many wrong admin tokens one address may send
// before it is slowed down.
const adminFreeGuesses = 5

func newAuth(token func() string, log *slog.Logger) *auth {
	return &auth{token: token, log: log, guess: httpguard.NewBackoff[netip.Addr](adminFreeGuesses, time.Minute, nil)}
}

// hasToken reports whether r carries the configured admin token as
// "Authorization: Bearer <token>". With no token configured it is false.
// A wrong token is logged (never its value) and counted, and after
// adminFreeGuesses of them from one address that address's tokens are not
// even compared for a backoff doubling from a second to a minute.
func (g *auth) hasToken(r *http.Request) bool {
	want := g.token()
	if want == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	addr := httpguard.PeerAddr(r)
	if g.guess.Wait(addr) > 0 {
		g.throttled.Add(1)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
		g.guess.Succeed(addr)
		return true
	}
	g.guess.Fail(addr)
	g.failed.Add(1)
	if g.log != nil {
		g.log.Warn("admin API: wrong admin token", slog.String("client", addr.String()),
			slog.String("method", r.Method), slog.String("path", r.URL.Path))
	}
	return false
}

// mayChange reports whether r may make a state-changing admin call
// (eviction, removal, verification): with an admin token configured, only
// a request carrying it; without one, only a request from loopback.
func (g *auth) mayChange(r *http.Request) bool {
	if g.token() != "" {
		return g.hasToken(r)
	}
	return fromLoopback(r)
}

// maySeePrivate reports whether r may see credentials-free but private
// details (repository names behind logins): a request with the admin token,
// or, when none is configured, one from loopback.
func (g *auth) maySeePrivate(r *http.Request) bool { return g.mayChange(r) }

// fromLoopback reports whether r's peer address is a loopback address.
// X-Forwarded-For is not read: a proxy in front of the admin listener makes
// every request look local, which is why a token should be set then.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// refuse answers a state-changing call that mayChange refused.
func (g *auth) refuse(w http.ResponseWriter) {
	msg := "this admin call changes the cache: it is taken from loopback only; set admin_token (REGCACHE_ADMIN_TOKEN) and send it as \"Authorization: Bearer <token>\" to call it from another host"
	if g.token() != "" {
		msg = "this admin call needs the admin token: send \"Authorization: Bearer <token>\""
	}
	http.Error(w, msg, http.StatusForbidden)
}

// register exports the wrong admin tokens sent to the admin listener.
func (g *auth) register(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewCounterFunc(AuthFailuresOpts("admin"), func() float64 { return float64(g.failed.Load()) }),
		prometheus.NewCounterFunc(AuthThrottledOpts("admin"), func() float64 { return float64(g.throttled.Load()) }))
}

// AuthFailuresOpts and AuthThrottledOpts are the counters of wrong
// secrets a listener was sent (admin: admin_token; cluster: cluster.secret).
func AuthFailuresOpts(listener string) prometheus.CounterOpts {
	return prometheus.CounterOpts{Name: "regcache_auth_failures_total", Help: "Wrong secrets sent to a listener (admin: admin_token; cluster: cluster.secret).",
		ConstLabels: prometheus.Labels{"listener": listener}}
}

// AuthThrottledOpts: see AuthFailuresOpts.
func AuthThrottledOpts(listener string) prometheus.CounterOpts {
	return prometheus.CounterOpts{Name: "regcache_auth_throttled_total", Help: "Secrets not even compared: their address sent too many wrong ones lately.",
		ConstLabels: prometheus.Labels{"listener": listener}}
}

// Guarded is the admin listener's handler: Handler behind
// httpguard.Guard, which answers only to the listener's own names (no
// DNS rebinding) and takes state-changing calls only as same-site JSON.
func (a *Admin) Guarded() http.Handler {
	cfg := a.src.Config()
	var names []string
	if h, err := os.Hostname(); err == nil {
		short, _, _ := strings.Cut(h, ".")
		names = append(names, h, short)
	}
	if h, _, err := net.SplitHostPort(cfg.Addr); err == nil {
		names = append(names, h)
	}
	// Names configured for this mirror: the replica's advertised URL, and
	// the upstreams' names and aliases, which clients reach the registry
	// listener by (an attacker controls none of their DNS).
	if u, err := url.Parse(cfg.Cluster.Advertise); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	for _, u := range cfg.Upstreams {
		names = append(append(names, u.Name), u.Aliases...)
	}
	return httpguard.Guard(a.Handler(), httpguard.Hosts(cfg.AdminAddr, names...))
}
