package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

// TestExplain: each option's source is the one precedence picks (flag >
// env > file > default), values are as given, and secrets are redacted
// whichever source gave them.
func TestExplain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "regcache.yaml")
	yaml := "freshness: 5m\nfill_timeout: 10m\nlog: {level: warn}\nupstreams:\n  - {url: https://ghcr.io, username: me, password: hunter2}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", path, "--fill-timeout", "20m", "--admin-token", "tok-0123456789abcdef"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REGCACHE_LOG_LEVEL": "debug", "REGCACHE_ADDR": "127.0.0.1:7000"}
	settings, c, err := Explain(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Freshness.String() != "5m0s" || c.Log.Level != "debug" {
		t.Errorf("the Config is not Load's: %+v", c)
	}
	want := map[string][2]string{
		"freshness":             {"5m", "file " + path},
		"fill_timeout":          {"20m0s", "flag --fill-timeout"},
		"log.level":             {"debug", "env REGCACHE_LOG_LEVEL"},
		"addr":                  {"127.0.0.1:7000", "env REGCACHE_ADDR"},
		"data":                  {"./data", "default"},
		"upstreams[0].url":      {"https://ghcr.io", "file " + path + " (upstreams[0])"},
		"upstreams[0].password": {"<redacted>", "file " + path + " (upstreams[0])"},
		"admin_token":           {"<redacted>", "flag --admin-token"},
		"storage.max_size":      {"80%", "default"},
	}
	seen := 0
	for _, s := range settings {
		w, ok := want[s.Key]
		if !ok {
			continue
		}
		seen++
		if s.Value != w[0] || s.Source != w[1] {
			t.Errorf("%s = %q from %q, want %q from %q", s.Key, s.Value, s.Source, w[0], w[1])
		}
	}
	if seen != len(want) {
		t.Errorf("%d of the %d keys checked are listed", seen, len(want))
	}
	for _, s := range settings {
		if s.Value == "hunter2" || s.Value == "tok" {
			t.Errorf("%s shows a secret", s.Key)
		}
	}
}

// TestExplainImageLayers: a Distribution config.yml and the image's
// defaults file (REGCACHE_DEFAULTS) are named as the sources of what they
// set, below the environment.
func TestExplainImageLayers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dist := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(dist, []byte("version: 0.1\nproxy:\n  remoteurl: https://registry-1.docker.io\n  username: me\n  password: hunter2\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/registry\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defs := filepath.Join(dir, "defaults.yaml")
	if err := os.WriteFile(defs, []byte("admin_addr: \":5001\"\ndata: /var/lib/registry\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	if err := fs.Parse([]string{"--config", dist}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"REGCACHE_DEFAULTS": defs}
	settings, _, err := Explain(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		"admin_addr":            {":5001", "defaults file " + defs + " (REGCACHE_DEFAULTS)"},
		"data":                  {"/var/lib/registry", "file " + dist + " (Distribution's config.yml)"},
		"upstreams[0].username": {"me", "file " + dist + " (Distribution's config.yml)"},
		"upstreams[0].password": {"<redacted>", "file " + dist + " (Distribution's config.yml)"},
	}
	for _, s := range settings {
		if w, ok := want[s.Key]; ok && (s.Value != w[0] || s.Source != w[1]) {
			t.Errorf("%s = %q from %q, want %q from %q", s.Key, s.Value, s.Source, w[0], w[1])
		}
	}
}
