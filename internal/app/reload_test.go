package app

import (
	"slices"
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
