package app

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/config"
)

// TestNeedsRestart: the settings a reload cannot apply are named when they
// change, and nothing is named when nothing did.
func TestNeedsRestart(t *testing.T) {
	run := config.Config{Addr: ":5000", Data: "./data", Freshness: time.Minute,
		Upstreams: []config.Upstream{{Name: "docker.io", URL: "https://registry-1.docker.io"}}}
	if got := needsRestart(run, run); len(got) != 0 {
		t.Errorf("unchanged: %v", got)
	}
	next := run
	next.Addr, next.Freshness = ":6000", time.Hour
	next.Upstreams = []config.Upstream{{Name: "docker.io", URL: "https://mirror.gcr.io"}}
	next.Access.Allow = nil // reloadable: not named
	got := needsRestart(run, next)
	if want := []string{"addr", "freshness", "upstreams"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestReloadWithMoreUpstreams: a reloaded file that lists another upstream
// applies its access rules with the running upstreams (no panic on the
// client it lacks) and says the upstreams need a restart.
func TestReloadWithMoreUpstreams(t *testing.T) {
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": "http://127.0.0.1:9"})
	next := m.App.cfg
	next.Upstreams = append(slices.Clone(next.Upstreams), config.Upstream{Name: "ghcr.io", URL: "https://ghcr.io"})
	next.Access.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	reloaded, restart, err := m.App.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(restart, "upstreams") || !slices.ContainsFunc(reloaded, func(s string) bool { return strings.HasPrefix(s, "access.allow") }) {
		t.Errorf("reloaded %v, restart %v", reloaded, restart)
	}
}
