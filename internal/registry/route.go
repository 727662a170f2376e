package registry

import (
	"net"
	"net/http"
	"strings"

	"github.com/regcache/regcache/internal/oci"
)

// route is where a request goes: an upstream and the repository name there.
type route struct {
	up   *Upstream
	repo string
	how  string // ns, prefix, host, default
	// prefix is the registry path prefix the client used (how == prefix).
	prefix string
}

// resolve picks the upstream for a request, in order: containerd's ?ns=,
// a /v2/<registry>/... path prefix, a Host header naming an upstream (its
// name or an alias), the default upstream.
// A registry that is not configured is refused with NAME_UNKNOWN so the
// client falls back to it instead of pulling the wrong thing.
func (s *Server) resolve(r *http.Request, name string) (route, error) {
	if ns := r.URL.Query().Get("ns"); ns != "" {
		up := s.byName(ns)
		if up == nil {
			return route{}, notConfigured(ns)
		}
		return route{up: up, repo: hubName(up, name), how: "ns"}, nil
	}
	if first, rest, ok := strings.Cut(name, "/"); ok && looksLikeRegistry(first) {
		up := s.byName(first)
		if up == nil {
			return route{}, notConfigured(first)
		}
		return route{up: up, repo: hubName(up, rest), how: "prefix", prefix: first}, nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, up := range s.upstreams {
		if up.answersTo(host) || up.answersTo(r.Host) {
			return route{up: up, repo: hubName(up, name), how: "host"}, nil
		}
	}
	up := s.upstreams[0]
	return route{up: up, repo: hubName(up, name), how: "default"}, nil
}

// answersTo reports whether host (from the Host header, with or without
// its port) names this upstream: its own name, for clients sent to the
// mirror by DNS for that registry, or one of its aliases. Without the name,
// such a request would silently get the default upstream's content.
func (u *Upstream) answersTo(host string) bool {
	if strings.EqualFold(u.Name, host) {
		return true
	}
	for _, a := range u.Aliases {
		if strings.EqualFold(a, host) {
			return true
		}
	}
	return false
}

func (s *Server) byName(name string) *Upstream {
	name = strings.ToLower(name)
	if name == "index.docker.io" || name == "registry-1.docker.io" {
		name = "docker.io"
	}
	for _, up := range s.upstreams {
		if up.Name == name {
			return up
		}
	}
	return nil
}

// looksLikeRegistry tells a registry host from a repository's first path
// component, the way the docker reference grammar does: it has a dot or a
// port, or is localhost.
func looksLikeRegistry(s string) bool {
	return strings.ContainsAny(s, ".:") || s == "localhost"
}

// hubName adds Docker Hub's implicit library/ to one-component names.
func hubName(up *Upstream, name string) string {
	if up.isDockerHub() && !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

func notConfigured(registry string) *oci.Error {
	return oci.Errorf(oci.ErrNameUnknown, "registry %q is not configured on this mirror; pull it directly or add it to upstreams", registry)
}
