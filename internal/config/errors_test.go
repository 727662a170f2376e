package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		args []string
		want string // the whole message, or its start when it ends in "…"
	}{
		// Unknown keys and wrong shapes in the file, with key path and line.
		{name: "unknown key", yaml: "addr: \":5000\"\nfresness: 1m\n", want: `config: fresness: unknown key (line 2); did you mean freshness?`},
		{name: "unknown nested key", yaml: "storage:\n  max_sise: 1GB\n", want: `config: storage.max_sise: unknown key (line 2); did you mean max_size?`},
		{name: "unknown upstream key", yaml: "upstreams:\n  - url: https://ghcr.io\n    pasword: x\n", want: `config: upstreams[0].pasword: unknown key (line 3); did you mean password?`},
		{name: "scalar for list", yaml: "access:\n  allow: 10.0.0.0/8\n", want: `config: access.allow: want a list, got a single value (line 2)`},
		{name: "list for scalar", yaml: "addr: [a, b]\n", want: `config: addr: want a single value, got a list (line 1)`},
		{name: "scalar for mapping", yaml: "prefetch: true\n", want: `config: prefetch: want a mapping, got a single value (line 1)`},
		{name: "not a mapping", yaml: "- a\n", want: `config: top level: want a mapping, got a list (line 1)`},
		{name: "yaml syntax", yaml: "addr: [\n", want: `config: …`},
		{name: "missing file", args: []string{"--config", missing}, want: `config: open ` + missing + `: no such file or directory`},

		// Bad values, named by key, variable or flag.
		{name: "file duration", yaml: `freshness: "abc"`, want: `config: freshness: invalid duration "abc" (want a number with a unit: s, m or h, e.g. 90s, 10m, 1h30m)`},
		{name: "env duration", env: map[string]string{"REGCACHE_FRESHNESS": "abc"}, want: `config: REGCACHE_FRESHNESS: invalid duration "abc" (want a number with a unit: s, m or h, e.g. 90s, 10m, 1h30m)`},
		{name: "env duration without unit", env: map[string]string{"REGCACHE_FRESHNESS": "10"}, want: `config: REGCACHE_FRESHNESS: invalid duration "10" (want a number with a unit: s, m or h, e.g. 90s, 10m, 1h30m)`},
		{name: "file negative duration", yaml: "storage: {max_age: -1h}", want: `config: storage.max_age: must not be negative, got -1h0m0s`},
		{name: "env negative duration", env: map[string]string{"REGCACHE_FRESHNESS": "-5s"}, want: `config: REGCACHE_FRESHNESS: must not be negative, got -5s`},
		{name: "flag negative duration", args: []string{"--max-age=-1h"}, want: `config: --max-age: must not be negative, got -1h0m0s`},
		{name: "zero fill timeout", yaml: "fill_timeout: 0s", want: `config: fill_timeout: must be positive, got 0`},
		{name: "file size", yaml: "storage: {max_size: lots}", want: `config: storage.max_size: invalid size "lots" (want a byte count or a number with a unit, e.g. 500MB, 200GiB)`},
		{name: "env size", env: map[string]string{"REGCACHE_MAX_SIZE": "-1GB"}, want: `config: REGCACHE_MAX_SIZE: invalid size "-1GB": must not be negative`},
		{name: "flag size", args: []string{"--max-size", "12XB"}, want: `config: --max-size: invalid size "12XB" (want a byte count or a number with a unit, e.g. 500MB, 200GiB)`},
		{name: "file bool", yaml: "prefetch: {enabled: maybe}", want: `config: prefetch.enabled: invalid boolean "maybe" (want true or false)`},
		{name: "env int", env: map[string]string{"REGCACHE_PREFETCH_PARALLEL": "many"}, want: `config: REGCACHE_PREFETCH_PARALLEL: invalid integer "many"`},
		{name: "file parallel zero", yaml: "prefetch: {parallel: 0}", want: `config: prefetch.parallel: must be at least 1, got 0`},
		{name: "file CIDR", yaml: "access: {allow: [10.0.0.0/8, 10.0.0.0/33]}", want: `config: access.allow: invalid CIDR "10.0.0.0/33" (want e.g. 10.0.0.0/8)`},
		{name: "env CIDR", env: map[string]string{"REGCACHE_TRUSTED_PROXIES": "proxy.local"}, want: `config: REGCACHE_TRUSTED_PROXIES: invalid CIDR "proxy.local" (want e.g. 10.0.0.0/8)`},
		{name: "flag CIDR", args: []string{"--allow", "1.2.3.4/40"}, want: `config: --allow: invalid CIDR "1.2.3.4/40" (want e.g. 10.0.0.0/8)`},
		{name: "file private", yaml: "access: {private: maybe}", want: `config: access.private: invalid policy "maybe" (want deny, authenticated, allow)`},
		{name: "env private", env: map[string]string{"REGCACHE_PRIVATE": "open"}, want: `config: REGCACHE_PRIVATE: invalid policy "open" (want deny, authenticated, allow)`},
		{name: "log level", yaml: "log: {level: verbose}", want: `config: log.level: invalid log level "verbose" (want debug, info, warn, error)`},
		{name: "log format", env: map[string]string{"REGCACHE_LOG_FORMAT": "xml"}, want: `config: REGCACHE_LOG_FORMAT: invalid log format "xml" (want json, text)`},
		{name: "addr", yaml: `addr: "5000"`, want: `config: addr: invalid address "5000" (want host:port, e.g. :5000)`},
		{name: "distribution addr", env: map[string]string{"REGISTRY_HTTP_ADDR": "localhost"}, want: `config: REGISTRY_HTTP_ADDR: invalid address "localhost" (want host:port, e.g. :5000)`},
		{name: "empty data", yaml: `data: ""`, want: `config: data: must not be empty`},
		{name: "htpasswd missing", env: map[string]string{"REGCACHE_HTPASSWD": missing}, want: `config: REGCACHE_HTPASSWD: open ` + missing + `: no such file or directory`},

		// Upstreams.
		{name: "url without scheme", yaml: "upstreams: [{url: ghcr.io}]", want: `config: upstreams[0].url: invalid URL "ghcr.io": add http:// or https:// in front, e.g. https://ghcr.io`},
		{name: "flag url host:port", args: []string{"--upstream-url", "127.0.0.1:5711"}, want: `config: --upstream-url: invalid URL "127.0.0.1:5711": add http:// or https:// in front, e.g. https://127.0.0.1:5711`},
		{name: "url that does not parse", env: map[string]string{"REGCACHE_UPSTREAM_URL": "http://[::1"}, want: `config: REGCACHE_UPSTREAM_URL: invalid URL "http://[::1": want scheme://host[:port], e.g. https://registry-1.docker.io`},
		{name: "url with other scheme", env: map[string]string{"REGCACHE_UPSTREAM_URL": "ftp://ghcr.io"}, want: `config: REGCACHE_UPSTREAM_URL: invalid URL "ftp://ghcr.io": scheme must be http or https`},
		{name: "url with path", env: map[string]string{"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io/v2/"}, want: `config: REGISTRY_PROXY_REMOTEURL: invalid URL "https://ghcr.io/v2/": must not have a path, query or fragment`},
		{name: "url with credentials", args: []string{"--upstream-url", "https://me:pw@ghcr.io"}, want: `config: --upstream-url: invalid URL "https://me:xxxxx@ghcr.io": credentials belong in username and password`},
		{name: "url missing", yaml: "upstreams: [{name: ghcr.io}]", want: `config: upstreams[0].url: missing`},
		{name: "bad name", yaml: "upstreams: [{name: ghcr.io/foo, url: https://ghcr.io}]", want: `config: upstreams[0].name: invalid registry host name "ghcr.io/foo" (want e.g. ghcr.io)`},
		{name: "no upstreams", yaml: "upstreams: []", want: `config: upstreams: at least one upstream is required`},
		{name: "duplicate names", yaml: "upstreams:\n  - url: https://ghcr.io\n  - {name: GHCR.io, url: http://localhost:5000}\n",
			want: `config: upstreams[1].name: duplicate registry host name "ghcr.io", already used by upstreams[0].name`},
		{name: "duplicate alias", yaml: "upstreams:\n  - url: https://ghcr.io\n  - {url: https://quay.io, aliases: [ghcr.io]}\n",
			want: `config: upstreams[1].aliases[0]: duplicate registry host name "ghcr.io", already used by upstreams[0].name`},
		{name: "file password and password_file", yaml: "upstreams: [{url: https://ghcr.io, username: me, password: x, password_file: /x}]",
			want: `config: upstreams[0]: password and password_file are both set; use one`},
		{name: "env password and password_file", env: map[string]string{"REGISTRY_PROXY_PASSWORD": "x", "REGCACHE_PASSWORD_FILE": "/x"},
			want: `config: REGISTRY_PROXY_PASSWORD and REGCACHE_PASSWORD_FILE are both set; use one`},
		{name: "flag password and password_file", args: []string{"--password", "x", "--password-file", "/x"},
			want: `config: --password and --password-file are both set; use one`},
		{name: "file unreadable password_file", yaml: "upstreams: [{url: https://ghcr.io, username: me, password_file: " + missing + "}]",
			want: `config: upstreams[0].password_file: open ` + missing + `: no such file or directory`},
		{name: "env unreadable password_file", env: map[string]string{"REGCACHE_USERNAME": "me", "REGCACHE_PASSWORD_FILE": missing},
			want: `config: REGCACHE_PASSWORD_FILE: open ` + missing + `: no such file or directory`},
		{name: "password without username", env: map[string]string{"REGCACHE_PASSWORD": "x"}, want: `config: upstreams[0]: a password is set but username is not`},
		{name: "tls cert without key", yaml: "tls: {cert: /c}", want: `config: tls: cert is set but key is not; set both or neither`},
		{name: "tls key without cert", args: []string{"--tls-key", "/k"}, want: `config: tls: key is set but cert is not; set both or neither`},

		// Typos in variable names.
		{name: "unknown variable", env: map[string]string{"REGCACHE_FRESHNES": "1m", "REGCACHE_ADDR": ":1"},
			want: `config: unknown environment variable REGCACHE_FRESHNES; did you mean REGCACHE_FRESHNESS?`},
		{name: "unknown variable far from any", env: map[string]string{"REGCACHE_COLOUR": "red"},
			want: `config: unknown environment variable REGCACHE_COLOUR (known: REGCACHE_ADDR, REGCACHE_ADMIN_ADDR, REGCACHE_ADMIN_TOKEN, REGCACHE_ALLOW, …`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := loadWith(t, tt.yaml, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("no error, want %s", tt.want)
			}
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(err.Error(), prefix) {
					t.Errorf("error:\n got %s\nwant %s", err, tt.want)
				}
				return
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestErrorsAreAllReported(t *testing.T) {
	t.Parallel()
	_, err := loadWith(t, "freshness: x\nlog: {level: loud}\n", nil)
	want := "config: freshness: invalid duration \"x\" (want a number with a unit: s, m or h, e.g. 90s, 10m, 1h30m)\nconfig: log.level: invalid log level \"loud\" (want debug, info, warn, error)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

// TestTyposAreAllReported: a file with three misspelt keys (one nested in an
// upstream) and two misspelt variables gets one did-you-mean for each.
func TestTyposAreAllReported(t *testing.T) {
	t.Parallel()
	yaml := "fresnhess: 1m\nupstreams:\n  - url: https://ghcr.io\n    usrname: me\nstorage:\n  max_szie: 1GB\n"
	_, err := loadWith(t, yaml, nil)
	want := "config: fresnhess: unknown key (line 1); did you mean freshness?\n" +
		"config: upstreams[0].usrname: unknown key (line 4); did you mean username?\n" +
		"config: storage.max_szie: unknown key (line 6); did you mean max_size?"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	_, err = loadWith(t, "", map[string]string{"REGCACHE_ADR": ":1", "REGCACHE_LOG_LEVL": "info"})
	want = "config: unknown environment variable REGCACHE_ADR; did you mean REGCACHE_ADDR?\n" +
		"config: unknown environment variable REGCACHE_LOG_LEVL; did you mean REGCACHE_LOG_LEVEL?"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	c.fillNames()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c.Freshness = -time.Second
	c.Storage.MaxSize = -1
	c.Prefetch.Parallel = 0
	err := c.Validate()
	for _, want := range []string{
		"config: freshness: must not be negative, got -1s",
		"config: storage.max_size: must not be negative, got -1",
		"config: prefetch.parallel: must be at least 1, got 0",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, missing %q", err, want)
		}
	}
	if err := (Config{}).Validate(); err == nil {
		t.Error("zero Config is valid")
	}
}
