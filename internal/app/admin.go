package app

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// adminToken reports whether r carries the configured admin token as
// "Authorization: Bearer <token>". With no token configured it is false.
func (a *App) adminToken(r *http.Request) bool {
	want := a.config().AdminToken
	if want == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
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
