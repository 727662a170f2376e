package app

import (
	"crypto/subtle"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/regcache/regcache/internal/httpguard"
)

// adminToken reports whether r carries the configured admin token as
// "Authorization: Bearer <token>". With no token configured it is false.
// A wrong token is logged (never its value) and counted, and after
// adminFreeGuesses of them from one address that address's tokens are not
// even compared for a backoff doubling from a second to a minute.
func (a *App) adminToken(r *http.Request) bool {
	want := a.config().AdminToken
	if want == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	guard, addr := a.adminAuth.backoff(), httpguard.PeerAddr(r)
	if guard.Wait(addr) > 0 {
		a.adminAuth.throttled.Add(1)
		return false
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1 {
		guard.Succeed(addr)
		return true
	}
	guard.Fail(addr)
	a.adminAuth.failed.Add(1)
	if a.log != nil {
		a.log.Warn("admin API: wrong admin token", slog.String("client", addr.String()),
			slog.String("method", r.Method), slog.String("path", r.URL.Path))
	}
	return false
}

// adminFreeGuesses is how many wrong admin tokens one address may send
// before it is slowed down.
const adminFreeGuesses = 5

// adminAuth counts and slows down wrong admin tokens.
type adminAuth struct {
	once              sync.Once
	guess             *httpguard.Backoff
	failed, throttled atomic.Int64
}

func (g *adminAuth) backoff() *httpguard.Backoff {
	g.once.Do(func() { g.guess = httpguard.NewBackoff(adminFreeGuesses, time.Minute) })
	return g.guess
}

// adminHandlerGuarded is the admin listener's handler: AdminHandler behind
// httpguard.Guard, which answers only to the listener's own names (no
// DNS rebinding) and takes state-changing calls only as same-site JSON.
func (a *App) adminHandlerGuarded() http.Handler {
	var names []string
	if h, err := os.Hostname(); err == nil {
		short, _, _ := strings.Cut(h, ".")
		names = append(names, h, short)
	}
	if h, _, err := net.SplitHostPort(a.config().Addr); err == nil {
		names = append(names, h)
	}
	// Names configured for this mirror: the replica's advertised URL, and
	// the upstreams' names and aliases, which clients reach the registry
	// listener by (an attacker controls none of their DNS).
	if u, err := url.Parse(a.config().Cluster.Advertise); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	for _, u := range a.config().Upstreams {
		names = append(append(names, u.Name), u.Aliases...)
	}
	return httpguard.Guard(a.AdminHandler(), httpguard.Hosts(a.config().AdminAddr, names...))
}

// adminMayChange reports whether r may make a state-changing admin call
// (eviction, removal, verification): with an admin token configured, only
// a request carrying it; without one, only a request from loopback.
func (a *App) adminMayChange(r *http.Request) bool {
	if a.config().AdminToken != "" {
		return a.adminToken(r)
	}
	return fromLoopback(r)
}

// adminMaySeePrivate reports whether r may see credentials-free but private
// details (repository names behind logins): a request with the admin token,
// or, when none is configured, one from loopback.
func (a *App) adminMaySeePrivate(r *http.Request) bool { return a.adminMayChange(r) }

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

// refuseAdmin answers a state-changing call that adminMayChange refused.
func (a *App) refuseAdmin(w http.ResponseWriter) {
	msg := "this admin call changes the cache: it is taken from loopback only; set admin_token (REGCACHE_ADMIN_TOKEN) and send it as \"Authorization: Bearer <token>\" to call it from another host"
	if a.config().AdminToken != "" {
		msg = "this admin call needs the admin token: send \"Authorization: Bearer <token>\""
	}
	http.Error(w, msg, http.StatusForbidden)
}

// registerAuthFailures exports the wrong secrets each listener was sent:
// admin tokens, and the cluster secret on the replicas' internal endpoint.
func (a *App) registerAuthFailures() {
	opts := func(name, help, listener string) prometheus.CounterOpts {
		return prometheus.CounterOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"listener": listener}}
	}
	a.metrics.MustRegister(
		prometheus.NewCounterFunc(opts("regcache_auth_failures_total", "Wrong secrets sent to a listener (admin: admin_token; cluster: cluster.secret).", "admin"),
			func() float64 { return float64(a.adminAuth.failed.Load()) }),
		prometheus.NewCounterFunc(opts("regcache_auth_throttled_total", "Secrets not even compared: their address sent too many wrong ones lately.", "admin"),
			func() float64 { return float64(a.adminAuth.throttled.Load()) }))
	if c := a.cluster; c != nil {
		a.metrics.MustRegister(
			prometheus.NewCounterFunc(opts("regcache_auth_failures_total", "Wrong secrets sent to a listener (admin: admin_token; cluster: cluster.secret).", "cluster"),
				func() float64 { f, _ := c.AuthFailures(); return float64(f) }),
			prometheus.NewCounterFunc(opts("regcache_auth_throttled_total", "Secrets not even compared: their address sent too many wrong ones lately.", "cluster"),
				func() float64 { _, th := c.AuthFailures(); return float64(th) }))
	}
}
