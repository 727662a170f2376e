// Package httpguard keeps web pages and guessers away from regcache's
// listeners that are not the registry API: the admin listener (a web page
// in an operator's browser must not drive it, nor read it through DNS
// rebinding), its JSON calls (one strict decoder), and a backoff for wrong
// secrets (the admin token, the cluster secret).
package httpguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// HostCheck reports whether a Host header names the listener.
type HostCheck func(host string) bool

// Hosts accepts the names a listener on listenAddr serves: an IP literal
// (a DNS rebinding attack needs a name of the attacker's, never an
// address), localhost and *.localhost, the listen address's host, and
// names (e.g. the machine's host name, configured names). Ports are not
// compared. Names are compared without case.
func Hosts(listenAddr string, names ...string) HostCheck {
	known := []string{}
	if h, _, err := net.SplitHostPort(listenAddr); err == nil && h != "" {
		known = append(known, strings.ToLower(h))
	}
	for _, n := range names {
		if n = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), ".")); n != "" {
			known = append(known, n)
		}
	}
	return func(host string) bool {
		h := hostOnly(host)
		if h == "" {
			return false
		}
		if _, err := netip.ParseAddr(h); err == nil {
			return true
		}
		return h == "localhost" || strings.HasSuffix(h, ".localhost") || slices.Contains(known, h)
	}
}

// hostOnly is a Host header's host, lower case, without port, brackets
// or a trailing dot.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(host, "]"), "["), ".")
	return strings.ToLower(host)
}

// Guard wraps a listener's handler. Every request must name the listener
// in its Host header (else 421: a DNS-rebound page reads nothing). A
// request that changes state (any method but GET, HEAD and OPTIONS) must
// come from the same site (an Origin matching the Host, and no
// Sec-Fetch-Site of cross-site or same-site: else 403) and carry
// Content-Type: application/json, or application/x-tar for a bundle
// upload (else 415): neither is a type a plain HTML form can send, nor a
// script of another site without a CORS preflight that is never answered.
func Guard(next http.Handler, hostOK HostCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostOK(r.Host) {
			http.Error(w, fmt.Sprintf("this listener does not answer to the name %q: use its address, localhost, or a name it is configured with", r.Host),
				http.StatusMisdirectedRequest)
			return
		}
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			next.ServeHTTP(w, r)
			return
		}
		if why := crossSite(r); why != "" {
			http.Error(w, "cross-site request refused: "+why, http.StatusForbidden)
			return
		}
		if !IsJSON(r) && !isTar(r) {
			http.Error(w, "this call takes Content-Type: application/json", http.StatusUnsupportedMediaType)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// crossSite says why r comes from another site, or "".
func crossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "cross-site", "same-site":
		return "Sec-Fetch-Site: " + site
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return "" // not a browser, or a browser that sends no Origin on same-origin calls
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || !strings.EqualFold(u.Host, r.Host) {
		return "Origin " + origin + " is not " + r.Host
	}
	return ""
}

// IsJSON reports whether r's Content-Type is application/json.
func IsJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// isTar reports whether r's Content-Type is application/x-tar (the
// body of a bundle import).
func isTar(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/x-tar"
}

// DecodeJSON reads r's body, of at most limit bytes, as exactly one JSON
// value into v: the Content-Type must be application/json, unknown fields
// are refused, and so is anything but white space after the value.
func DecodeJSON(r *http.Request, v any, limit int64) error {
	if !IsJSON(r) {
		return errors.New("the body must be sent with Content-Type: application/json")
	}
	body := &io.LimitedReader{R: r.Body, N: limit + 1}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("bytes after the JSON value")
	}
	if body.N == 0 {
		return fmt.Errorf("the body is longer than %d bytes", limit)
	}
	return nil
}
