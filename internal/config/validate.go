package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/rules"
)

// Validate checks c as a whole and returns every problem found, each naming
// its YAML key. Load calls it; call it again only on a Config built or
// changed in code. It reads each upstream's password_file and the htpasswd
// file to make sure they are readable, so a typo in a path stops start-up.
func (c Config) Validate() error {
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", key, err))
		}
	}
	check := func(key, v string, f func(string) (string, error)) {
		_, err := f(v)
		add(key, err)
	}
	check("addr", c.Addr, checkAddr)
	check("admin_addr", c.AdminAddr, checkAdminAddr)
	if c.AdminToken != "" && len(c.AdminToken) < minAdminToken {
		add("admin_token", fmt.Errorf("set a token of at least %d characters (e.g. openssl rand -hex 16), or none", minAdminToken))
	}
	check("data", c.Data, checkNonEmpty)
	add("freshness", checkDuration(c.Freshness, false))
	add("fill_timeout", checkDuration(c.FillTimeout, true))
	add("shutdown_timeout", checkDuration(c.ShutdownTimeout, true))
	if c.Prefetch.Parallel < 1 {
		add("prefetch.parallel", fmt.Errorf("must be at least 1, got %d", c.Prefetch.Parallel))
	}
	if c.Storage.MaxSize < 0 {
		add("storage.max_size", fmt.Errorf("must not be negative, got %d", c.Storage.MaxSize))
	}
	add("storage.max_age", checkDuration(c.Storage.MaxAge, false))
	if _, err := rules.Compile(c.Rules); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	if _, err := policy.Compile(c.Policy); err != nil {
		errs = append(errs, fmt.Errorf("config: %w", err))
	}
	add("access.allow", checkPrefixes(c.Access.Allow))
	add("access.trusted_proxies", checkPrefixes(c.Access.TrustedProxies))
	check("access.htpasswd", c.Access.Htpasswd, checkOptionalReadable)
	check("access.private", c.Access.Private, checkPrivate)
	if len(c.Access.Users) > 0 && c.Access.Htpasswd == "" {
		add("access.users", errors.New("users are listed but access.htpasswd is not set"))
	}
	for user, pats := range c.Access.Users {
		for i, p := range pats {
			if strings.TrimSpace(p) == "" || strings.ContainsAny(p, " \t@?#\\") {
				add(fmt.Sprintf("access.users.%s[%d]", user, i), fmt.Errorf("invalid repository pattern %q (want e.g. myorg/*)", p))
			}
		}
	}
	switch {
	case c.TLS.Cert != "" && c.TLS.Key == "":
		add("tls", errors.New("cert is set but key is not; set both or neither"))
	case c.TLS.Cert == "" && c.TLS.Key != "":
		add("tls", errors.New("key is set but cert is not; set both or neither"))
	}
	check("log.level", c.Log.Level, checkLogLevel)
	check("log.format", c.Log.Format, checkLogFormat)
	errs = append(errs, c.validateUpstreams()...)
	errs = append(errs, c.validateCluster()...)
	return errors.Join(errs...)
}

// validateUpstreams checks each upstream and that no two share a name or alias.
func (c Config) validateUpstreams() []error {
	if len(c.Upstreams) == 0 {
		return []error{errors.New("config: upstreams: at least one upstream is required")}
	}
	var errs []error
	add := func(key string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", key, err))
		}
	}
	seen := map[string]string{} // host name → key that claimed it
	claim := func(key, name string) {
		n, err := checkName(name)
		if err != nil {
			add(key, err)
			return
		}
		if prev, dup := seen[n]; dup {
			add(key, fmt.Errorf("duplicate registry host name %q, already used by %s", n, prev))
			return
		}
		seen[n] = key
	}
	for i, u := range c.Upstreams {
		key := fmt.Sprintf("upstreams[%d]", i)
		if _, err := checkUpstreamURL(u.URL); err != nil {
			add(key+".url", err)
		}
		claim(key+".name", u.Name)
		for j, a := range u.Aliases {
			claim(fmt.Sprintf("%s.aliases[%d]", key, j), a)
		}
		if err := u.checkCredentialProgram(); err != nil {
			add(key, err)
			continue
		}
		if u.Password != "" && u.PasswordFile != "" {
			add(key, errors.New("password and password_file are both set; use one"))
			continue
		}
		if (u.Password != "" || u.PasswordFile != "") && u.Username == "" {
			add(key, errors.New("a password is set but username is not"))
		}
		if u.PasswordFile != "" {
			if pw, err := c.Password(i); err != nil {
				errs = append(errs, err)
			} else if pw == "" {
				add(key+".password_file", fmt.Errorf("%s is empty", u.PasswordFile))
			}
		}
	}
	return append(errs, c.validateFallbacks()...)
}

// checkCredentialProgram checks max_bandwidth and max_connections, and
// credential_helper, credential_command and credential_ttl: one program at
// most, instead of a password, found on PATH (a typo stops start-up, not
// the first pull).
func (u Upstream) checkCredentialProgram() error {
	helper, command := u.CredentialHelper != "", len(u.CredentialCommand) > 0
	switch {
	case u.CredentialTTL < 0:
		return fmt.Errorf("credential_ttl must not be negative, got %s", u.CredentialTTL)
	case u.MaxBandwidth < 0:
		return errors.New("max_bandwidth must not be negative")
	case u.MaxConnections < 0:
		return fmt.Errorf("max_connections must not be negative, got %d", u.MaxConnections)
	case u.FillConnections < 0:
		return fmt.Errorf("fill_connections must not be negative, got %d", u.FillConnections)
	case !helper && !command:
		if u.CredentialTTL != 0 {
			return errors.New("credential_ttl is set without credential_helper or credential_command")
		}
		return nil
	case helper && command:
		return errors.New("credential_helper and credential_command are both set; use one")
	case u.Username != "" || u.Password != "" || u.PasswordFile != "":
		return errors.New("a credential program and username/password are both set; the program gives both, use one")
	case helper && (strings.ContainsAny(u.CredentialHelper, "/\\ \t") || strings.HasPrefix(u.CredentialHelper, "docker-credential-")):
		return fmt.Errorf("credential_helper %q: give the helper's name, e.g. ecr-login for docker-credential-ecr-login", u.CredentialHelper)
	case command && strings.TrimSpace(u.CredentialCommand[0]) == "":
		return errors.New("credential_command: the program (first element) is empty")
	}
	prog := "docker-credential-" + u.CredentialHelper
	if command {
		prog = u.CredentialCommand[0]
	}
	if _, err := exec.LookPath(prog); err != nil {
		return fmt.Errorf("credential program %s: %w", prog, err)
	}
	return nil
}

// validateFallbacks checks that each upstream's fallback chain names other
// configured upstreams, each once.
func (c Config) validateFallbacks() []error {
	names := map[string]bool{}
	for _, u := range c.Upstreams {
		names[strings.ToLower(u.Name)] = true
	}
	var errs []error
	for i, u := range c.Upstreams {
		seen := map[string]bool{}
		for j, f := range u.Fallback {
			key := fmt.Sprintf("config: upstreams[%d].fallback[%d]", i, j)
			n := strings.ToLower(f)
			switch {
			case n == strings.ToLower(u.Name):
				errs = append(errs, fmt.Errorf("%s: %q is the upstream itself; name other upstreams of the list", key, f))
			case !names[n]:
				errs = append(errs, fmt.Errorf("%s: no upstream is named %q; add it to upstreams (with its url) or fix the name", key, f))
			case seen[n]:
				errs = append(errs, fmt.Errorf("%s: %q is named twice in the chain", key, f))
			}
			seen[n] = true
		}
	}
	return errs
}

// checkPrefixes rejects the zero netip.Prefix, which only code can produce.
func checkPrefixes(ps []netip.Prefix) error {
	for i, p := range ps {
		if !p.IsValid() {
			return fmt.Errorf("entry %d is not a valid network", i)
		}
	}
	return nil
}

// minAdminToken is the shortest admin_token taken, as cluster.secret's.
const minAdminToken = 16
