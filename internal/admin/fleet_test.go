package admin

import (
	"sync/atomic"
	"testing"

	"github.com/regcache/regcache/internal/canary"
	"github.com/regcache/regcache/internal/fleet"
	"github.com/regcache/regcache/internal/registry"
)

// upstreamsCounter is a Source whose Upstreams are counted; Observe must
// not need any other method.
type upstreamsCounter struct {
	Source
	calls atomic.Int64
}

func (c *upstreamsCounter) Upstreams() []Upstream {
	c.calls.Add(1)
	return []Upstream{{Name: "docker.io"}, {Name: "ghcr.io"}}
}

// TestObserveAsksUpstreamsOnlyForTheCanary: an answered request costs the
// observer no view of the upstreams (it locks each upstream's client)
// unless it is of the canary's repository; the canary is still told apart.
func TestObserveAsksUpstreamsOnlyForTheCanary(t *testing.T) {
	src := &upstreamsCounter{}
	a := &Admin{src: src, d: Deps{Fleet: fleet.New(16, 16)}, stats: newStats(nil, map[string]bool{})}
	for range 10 {
		a.Observe(registry.Served{Kind: "manifest", Method: "GET", Cache: "hit", Status: 200, Upstream: "docker.io", Repo: "library/alpine", Tag: "3"})
	}
	if n := src.calls.Load(); n != 0 {
		t.Errorf("10 ordinary hits asked for the upstreams %d times, want 0", n)
	}
	if !a.observeFleet(registry.Served{Kind: "manifest", Status: 200, Upstream: "docker.io", Repo: canary.Repo}) {
		t.Error("the canary's pull on the default upstream was not told apart")
	}
	if a.observeFleet(registry.Served{Kind: "manifest", Status: 200, Upstream: "ghcr.io", Repo: canary.Repo}) {
		t.Error("the canary's repository on another upstream was taken for the canary")
	}
}
