package app

import (
	"context"
	"strings"
	"sync"

	"github.com/regcache/regcache/internal/config"
)

// credentialed lists the upstreams the mirror asks with credentials, or
// whose fallback chain has a member it asks with credentials: what it
// fetched for them may be private, so their repositories are named on the
// dashboard only to the admin.
func credentialed(cfg config.Config) map[string]bool {
	out := map[string]bool{}
	withCreds := config.Upstream.Credentialed
	for _, u := range cfg.Upstreams {
		out[u.Name] = withCreds(u)
		// A chain is as private as its most privileged member.
		for _, name := range u.Fallback {
			for _, m := range cfg.Upstreams {
				if strings.EqualFold(m.Name, name) && withCreds(m) {
					out[u.Name] = true
				}
			}
		}
	}
	return out
}

// watch starts the upstreams' health probes (at once, then while idle)
// and the dashboard's history sampler; the returned function stops them
// and waits.
func (a *App) watch(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range a.upstreams {
		wg.Go(func() { u.Client.WatchHealth(ctx, a.config().ProbeInterval) })
	}
	wg.Go(func() { a.history.run(ctx, historyEvery, a.sample) })
	return func() { cancel(); wg.Wait() }
}

// upstreamNames are the configured upstreams' names: the closed set of
// the upstream label.
func (a *App) upstreamNames() []string {
	out := make([]string, 0, len(a.upstreams))
	for _, u := range a.upstreams {
		out = append(out, u.Name)
	}
	return out
}
