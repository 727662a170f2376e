package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/regcache/regcache/internal/clientconfig"
	"github.com/regcache/regcache/internal/redact"
	"github.com/regcache/regcache/internal/upstream"
)

// parseAddress reads a flag that names a regcache listener (--mirror,
// --admin): a URL (http://host:port, https://host) or host:port alone,
// which means http://host:port. It returns the base URL, scheme://host[:port]
// with the host in lower case and no path. Every error is one sentence that
// names the flag and the forms it takes, never Go's URL parser's words, and
// never a password the value may carry.
func parseAddress(flag, s string) (*url.URL, error) {
	raw := strings.TrimSpace(s)
	shown := redact.URL(raw)
	fail := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("%s %q: %s; give host:port (127.0.0.1:5000) or a URL (http://127.0.0.1:5000, https://mirror.example)", flag, shown, why)
	}
	if raw == "" {
		return fail("empty")
	}
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fail("not a host:port or URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return fail("the scheme must be http:// or https://")
	case u.Host == "" || u.Hostname() == "":
		return fail("no host")
	case u.User != nil:
		return fail("a login does not belong in the address (use the login flags)")
	case strings.TrimRight(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return fail("a path, query or fragment is not allowed (regcache answers at the root)")
	case strings.HasSuffix(u.Host, ":"):
		return fail("empty port")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fail(fmt.Sprintf("invalid port %q", p))
		}
	}
	if h := u.Hostname(); strings.ContainsAny(h, " /\\") || (strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		return fail(fmt.Sprintf("invalid host %q", h))
	}
	return &url.URL{Scheme: u.Scheme, Host: strings.ToLower(u.Host)}, nil
}

// parseMirrorFlag reads --mirror of the client commands: an address as
// parseAddress takes it, checked as a mirror that dockerd, containerd and
// podman accept.
func parseMirrorFlag(s string) (clientconfig.Mirror, error) {
	u, err := parseAddress("--mirror", s)
	if err != nil {
		return clientconfig.Mirror{}, err
	}
	return clientconfig.ParseMirror(u.String())
}

// mirrorTransport is the transport to a mirror: the system's roots plus
// caCert when given, or no verification when insecure; connect, TLS and
// header timeouts, none on a flowing body.
func mirrorTransport(caCert string, insecure bool) (*http.Transport, error) {
	t := upstream.DefaultTransport()
	t.ResponseHeaderTimeout = 2 * time.Minute
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure} //nolint:gosec // asked for with --insecure
	if caCert != "" {
		pem, err := os.ReadFile(caCert)
		if err != nil {
			return nil, fmt.Errorf("--ca-cert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-cert %s: no PEM certificate in the file", caCert)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}

// errNotRegistry is a /v2/ answer other than 200 or 401.
var errNotRegistry = errors.New("not a registry")

// errPlainHTTP is an https:// mirror URL whose server answers plain HTTP.
var errPlainHTTP = errors.New("the mirror answers plain HTTP, not HTTPS")

// plainHTTPAnswer is how net/http says a server answered a TLS hello with
// HTTP; it has no error type of its own to test for.
const plainHTTPAnswer = "server gave HTTP response to HTTPS client"

// pingMirror asks the mirror's /v2/ endpoint over rt, the transport the
// command uses for everything else (its CA, its headers). A registry
// answers 200, or 401 when it wants clients to log in (the login is the
// business of the requests that follow); anything else is not one.
func pingMirror(ctx context.Context, rt http.RoundTripper, base string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/", nil)
	if err != nil {
		return fmt.Errorf("probe the mirror: %w", err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if plain, ok := strings.CutPrefix(base, "https://"); ok && strings.Contains(err.Error(), plainHTTPAnswer) {
			return fmt.Errorf("reach the mirror at %s: %w: use --mirror http://%s", base, errPlainHTTP, plain)
		}
		return fmt.Errorf("reach the mirror at %s: %w", base, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return fmt.Errorf("mirror %s: GET /v2/ answered %s, want 200 or 401: %w", base, resp.Status, errNotRegistry)
	}
	return nil
}
