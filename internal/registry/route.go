package registry

import (
	"net"
	"net/http"
	"strings"

	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// route is where a request goes: an upstream and the repository name there.
type route struct {
	up   string // the upstream's name
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
	if ns := queryNS(r); ns != "" {
		up := s.byName(ns)
		if up == nil {
			return route{}, notConfigured(ns)
		}
		return route{up: up.Name, repo: oci.HubRepository(up.Name, name), how: "ns"}, nil
	}
	if first, rest, ok := strings.Cut(name, "/"); ok && oci.IsRegistryHost(first) {
		up := s.byName(first)
		if up == nil {
			return route{}, notConfigured(first)
		}
		return route{up: up.Name, repo: oci.HubRepository(up.Name, rest), how: "prefix", prefix: first}, nil
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	for _, up := range s.registries {
		if answersTo(up, host) || answersTo(up, r.Host) {
			return route{up: up.Name, repo: oci.HubRepository(up.Name, name), how: "host"}, nil
		}
	}
	up := s.registries[0]
	return route{up: up.Name, repo: oci.HubRepository(up.Name, name), how: "default"}, nil
}

// queryNS is containerd's ?ns= parameter; a request without a query
// string (nearly all) parses nothing.
func queryNS(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return r.URL.Query().Get("ns")
}

// answersTo reports whether host (from the Host header, with or without
// its port) names this upstream: its own name, for clients sent to the
// mirror by DNS for that registry, or one of its aliases. Without the name,
// such a request would silently get the default upstream's content.
func answersTo(u mirror.Registry, host string) bool {
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

func (s *Server) byName(name string) *mirror.Registry {
	name = oci.CanonicalRegistry(name)
	for i := range s.registries {
		if s.registries[i].Name == name {
			return &s.registries[i]
		}
	}
	return nil
}

func notConfigured(registry string) *oci.Error {
	return oci.Errorf(oci.ErrNameUnknown, "registry %q is not configured on this mirror; pull it directly or add it to upstreams", registry)
}

// request is the content service's request for a route, with who asked.
func (s *Server) request(rt route, r *http.Request) mirror.Request {
	client := peerAddr
	if s.clientAddr != nil {
		client = s.clientAddr
	}
	var user string
	if s.clientUser != nil {
		user = s.clientUser(r)
	}
	return mirror.Request{Upstream: rt.up, Repo: rt.repo, Accept: r.Header.Values("Accept"), Head: r.Method == http.MethodHead,
		Background: r.Header.Get(mirror.BackgroundHeader) == "1", Client: client(r), User: user}
}
