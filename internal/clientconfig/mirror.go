// Package clientconfig turns a container engine's existing configuration
// file and the operator's options into the new file contents that point the
// engine at a regcache mirror, and back. Every editor is a pure function of
// (old bytes, options) → new bytes, so it can be table-tested, fuzzed and
// shown as a diff before anything is written; WriteFile then replaces the
// file atomically.
//
// Three engines are covered: dockerd's daemon.json (edited in place, keeping
// the operator's keys, order and formatting), containerd's
// certs.d/<registry>/hosts.toml, and a registries.conf.d drop-in for podman
// and CRI-O.
package clientconfig

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/regcache/regcache/internal/redact"
)

// Mirror is a validated mirror address.
type Mirror struct {
	// URL is scheme://host[:port] without a trailing slash.
	URL string
	// Host is host[:port] as written in the URL.
	Host string
	// Insecure is true for a plain-HTTP mirror.
	Insecure bool
}

// ParseMirror validates a mirror URL: the scheme must be http or https, a
// host is required, a port must be 1-65535, and there must be no user
// information, path, query or fragment (dockerd refuses mirrors with a path).
func ParseMirror(s string) (Mirror, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	s = redact.URL(s) // the messages below never echo a password
	if err != nil {
		return Mirror{}, fmt.Errorf("mirror %q: not a URL", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Mirror{}, fmt.Errorf("mirror %q: scheme must be http:// or https://", s)
	}
	if u.Host == "" || u.Hostname() == "" {
		return Mirror{}, fmt.Errorf("mirror %q: no host", s)
	}
	if u.User != nil {
		return Mirror{}, fmt.Errorf("mirror %q: user information is not allowed in a mirror URL", s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Mirror{}, fmt.Errorf("mirror %q: path, query and fragment are not allowed (dockerd needs the registry at the root)", s)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Mirror{}, fmt.Errorf("mirror %q: invalid port %q", s, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return Mirror{}, fmt.Errorf("mirror %q: empty port", s)
	}
	if strings.ContainsAny(u.Hostname(), " /\\") || (strings.Contains(u.Hostname(), ":") && net.ParseIP(u.Hostname()) == nil) {
		return Mirror{}, fmt.Errorf("mirror %q: invalid host %q", s, u.Hostname())
	}
	host := strings.ToLower(u.Host)
	return Mirror{URL: u.Scheme + "://" + host, Host: host, Insecure: u.Scheme == "http"}, nil
}

// sameMirror reports whether two registry-mirrors entries name the same
// mirror; dockerd itself adds a trailing slash when it reads the list.
func sameMirror(a, b string) bool {
	return strings.EqualFold(strings.TrimRight(a, "/"), strings.TrimRight(b, "/"))
}

// Position says where a new mirror goes among the existing ones.
type Position string

// Positions for Options.Position.
const (
	First Position = "first"
	Last  Position = "last"
)

// ParsePosition validates a --position value.
func ParsePosition(s string) (Position, error) {
	switch Position(s) {
	case First, Last:
		return Position(s), nil
	case "":
		return First, nil
	}
	return "", fmt.Errorf("position %q: want first or last", s)
}
