package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/regcache/regcache/internal/config"
)

// startup is what serve tells the operator once it listens: where, with
// what, and what to do next.
type startup struct {
	Version, ConfigFile  string
	Addr, AdminURL, Data string
	TLS                  bool
	Upstreams            []string // "docker.io https://registry-1.docker.io (user me, password file /run/…)"
	Access               string
	Cap                  string
	Open                 bool   // every interface, no allow-list, no login
	Prog                 string // how the next steps name this program
}

// newStartup describes cfg as served on addr (the bound address).
func newStartup(cfg config.Config, addr string) startup {
	s := startup{Version: version, ConfigFile: cfg.File, Addr: addr, Data: cfg.Data, TLS: cfg.TLS.Cert != "", Prog: "regcache"}
	if exe, err := os.Executable(); err == nil {
		s.Prog = progName(exe)
	}
	if cfg.AdminAddr != "" {
		s.AdminURL = "http://" + dialable(cfg.AdminAddr)
	}
	for _, u := range cfg.Upstreams {
		s.Upstreams = append(s.Upstreams, u.Name+" "+u.URL+" ("+authMode(u)+")")
	}
	var parts []string
	if n := len(cfg.Access.Allow); n > 0 {
		parts = append(parts, fmt.Sprintf("clients from %d network(s)", n))
	} else {
		parts = append(parts, "every client")
	}
	if cfg.Access.Htpasswd != "" {
		parts = append(parts, "logins from "+cfg.Access.Htpasswd)
	}
	parts = append(parts, "private repositories: "+cfg.Access.Private)
	s.Access = strings.Join(parts, ", ")
	switch {
	case cfg.Storage.MaxSizePercent > 0:
		s.Cap = fmt.Sprintf("%g%% of the file system", cfg.Storage.MaxSizePercent)
	case cfg.Storage.MaxSize > 0:
		s.Cap = humanBytes(cfg.Storage.MaxSize)
	default:
		s.Cap = "none (set storage.max_size)"
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	everywhere := host == "" || host == "0.0.0.0" || host == "::"
	s.Open = everywhere && len(cfg.Access.Allow) == 0 && cfg.Access.Htpasswd == ""
	return s
}

// authMode says how the mirror logs in to u, without the secret.
func authMode(u config.Upstream) string {
	switch {
	case u.Username == "" && u.Password == "" && u.PasswordFile == "":
		return "anonymous"
	case u.PasswordFile != "":
		return "user " + u.Username + ", password from " + u.PasswordFile
	default:
		return "user " + u.Username + ", password in the configuration"
	}
}

// dialable turns a listen address into one a browser or client can use on
// this host: an empty or wildcard host becomes 127.0.0.1.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// openWarning is the warning for a mirror anyone who reaches it may use.
const openWarning = "the registry API listens on every interface with no allow-list and no login: anyone who can reach this host can pull through it and spend its upstream rate limit; set access.allow (--allow 10.0.0.0/8) to your clients' networks, or listen on one address (--addr 10.0.0.5:5000)"

// write prints the summary for a human.
func (s startup) write(w io.Writer) {
	scheme := "http"
	if s.TLS {
		scheme = "https"
	}
	fmt.Fprintf(w, "regcache %s is serving\n", s.Version)
	if s.ConfigFile != "" {
		fmt.Fprintf(w, "  config        %s\n", s.ConfigFile)
	}
	fmt.Fprintf(w, "  registry API  %s://%s (listening on %s)\n", scheme, dialable(s.Addr), s.Addr)
	if s.AdminURL != "" {
		fmt.Fprintf(w, "  dashboard     %s/   (metrics %s/metrics, status %s/status)\n", s.AdminURL, s.AdminURL, s.AdminURL)
	} else {
		fmt.Fprintf(w, "  dashboard     off (admin_addr is empty)\n")
	}
	fmt.Fprintf(w, "  data          %s\n", s.Data)
	for _, u := range s.Upstreams {
		fmt.Fprintf(w, "  upstream      %s\n", u)
	}
	fmt.Fprintf(w, "  access        %s\n", s.Access)
	fmt.Fprintf(w, "  cache cap     %s\n", s.Cap)
	if s.Open {
		fmt.Fprintf(w, "  WARNING       %s\n", openWarning)
	}
	fmt.Fprintf(w, "next: point a node's dockerd at it with\n  %s client docker enable --mirror %s://HOST:%s\n", s.Prog, scheme, portOf(s.Addr))
	if s.AdminURL != "" {
		fmt.Fprintf(w, "and check it with\n  %s status --admin %s\n", s.Prog, s.AdminURL)
	}
}

// progName is how the next steps name the program running from exe:
// `regcache`, or under `go run` (a binary in the go-build cache, gone once
// it stops) the same `go run` from the module's root.
func progName(exe string) string {
	if filepath.Base(filepath.Dir(exe)) == "exe" && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/regcache"
	}
	return "regcache"
}

// log writes the summary as one structured line, and the warning.
func (s startup) log(log *slog.Logger) {
	log.Info("regcache listening", slog.String("version", s.Version), slog.String("config", s.ConfigFile), slog.String("addr", s.Addr), slog.String("admin_url", s.AdminURL),
		slog.String("data", s.Data), slog.Any("upstreams", s.Upstreams), slog.String("access", s.Access),
		slog.String("cap", s.Cap), slog.Bool("tls", s.TLS))
	if s.Open {
		log.Warn(openWarning)
	}
}

func portOf(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "5000"
	}
	return port
}
