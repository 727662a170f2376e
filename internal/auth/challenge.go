package auth

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// challenge is a parsed WWW-Authenticate header.
type challenge struct {
	scheme string // "basic" or "bearer"
	params map[string]string
}

// parseChallenge parses the first challenge of a WWW-Authenticate header:
// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`.
func parseChallenge(h string) (challenge, bool) {
	h = strings.TrimSpace(h)
	scheme, rest, _ := strings.Cut(h, " ")
	c := challenge{scheme: strings.ToLower(scheme), params: map[string]string{}}
	if c.scheme != "basic" && c.scheme != "bearer" {
		return challenge{}, false
	}
	for rest = strings.TrimSpace(rest); rest != ""; rest = strings.TrimSpace(rest) {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.ToLower(strings.TrimSpace(key))
		var val string
		if strings.HasPrefix(after, `"`) {
			// quoted-string with backslash escapes
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			val = b.String()
			rest = after[min(i+1, len(after)):]
		} else {
			val, rest, _ = strings.Cut(after, ",")
			val = strings.TrimSpace(val)
		}
		c.params[key] = val
		rest = strings.TrimPrefix(strings.TrimSpace(rest), ",")
	}
	return c, true
}

// realmAllowed reports whether a token realm may receive the upstream's
// credentials: it must be on the upstream's own registrable domain
// (registry-1.docker.io → auth.docker.io), or both must be loopback (tests),
// and it must use https unless the upstream itself is plain http.
func realmAllowed(realm *url.URL, upstream *url.URL) bool {
	if realm.Scheme != "https" && !(realm.Scheme == "http" && upstream.Scheme == "http") {
		return false
	}
	rh, uh := realm.Hostname(), upstream.Hostname()
	if strings.EqualFold(rh, uh) {
		return true
	}
	if isLoopback(rh) && isLoopback(uh) {
		return true
	}
	if net.ParseIP(rh) != nil || net.ParseIP(uh) != nil {
		return false
	}
	rd, err1 := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(rh))
	ud, err2 := publicsuffix.EffectiveTLDPlusOne(strings.ToLower(uh))
	return err1 == nil && err2 == nil && rd == ud
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// challengeOf returns the challenge of a 401 response, if it has one.
func challengeOf(resp *http.Response) (challenge, bool) {
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		if c, ok := parseChallenge(h); ok {
			return c, true
		}
	}
	return challenge{}, false
}
