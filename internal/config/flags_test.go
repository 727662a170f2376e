package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestFlagUsage(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	help := fs.FlagUsages()
	for _, want := range []string{
		`listen address of the registry API (env REGCACHE_ADDR, REGISTRY_HTTP_ADDR) (default ":5000")`,
		`(env REGCACHE_UPSTREAM_URL, REGISTRY_PROXY_REMOTEURL) (default "https://registry-1.docker.io")`,
		`(env REGCACHE_DATA, REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY) (default "./data")`,
		`(env REGCACHE_USERNAME, REGISTRY_PROXY_USERNAME) (default anonymous)`,
		`(env REGCACHE_PASSWORD, REGISTRY_PROXY_PASSWORD) (default none)`,
		`(env REGCACHE_FRESHNESS) (default 1m0s)`,
		`(env REGCACHE_PREFETCH) (default true)`,
		`(env REGCACHE_PREFETCH_PARALLEL) (default 16)`,
		`(env REGCACHE_MAX_SIZE) (default "80%")`,
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// Every flag names its variable and default, and is one line.
	n := 0
	fs.VisitAll(func(f *pflag.Flag) {
		n++
		line := ""
		for l := range strings.Lines(help) {
			if strings.Contains(l, "--"+f.Name+" ") {
				line = l
			}
		}
		if !strings.Contains(line, "(env "+envName(f.Name)) || !strings.Contains(line, "(default ") {
			t.Errorf("--%s: usage line %q lacks env or default", f.Name, line)
		}
	})
	if n != len(options) {
		t.Errorf("%d flags, %d options", n, len(options))
	}
}

// TestFlagNames pins the flag and variable names scripts rely on.
func TestFlagNames(t *testing.T) {
	t.Parallel()
	want := []string{"config", "addr", "admin-addr", "data", "freshness", "fill-timeout", "prefetch",
		"prefetch-parallel", "budget-reserve", "upstream-url", "upstream-name", "username", "password", "password-file",
		"max-size", "max-age", "allow", "trusted-proxies", "htpasswd", "private", "tls-cert", "tls-key",
		"log-level", "log-format"}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	for _, name := range want {
		if fs.Lookup(name) == nil {
			t.Errorf("no --%s", name)
		}
	}
	if got := envName("password-file"); got != "REGCACHE_PASSWORD_FILE" {
		t.Errorf("envName = %s", got)
	}
}

func TestFlagParseError(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	err := fs.Parse([]string{"--freshness", "abc"})
	if err == nil || !strings.Contains(err.Error(), `"--freshness"`) {
		t.Errorf("err = %v, want it to name --freshness", err)
	}
}
