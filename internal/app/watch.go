package app

import (
	"context"
	"sync"

	"github.com/regcache/regcache/internal/config"
)

// credentialed lists the upstreams the mirror asks with credentials: what
// it fetched from them may be private, so their repositories are named
// on the dashboard only to the admin.
func credentialed(cfg config.Config) map[string]bool {
	out := map[string]bool{}
	for _, u := range cfg.Upstreams {
		out[u.Name] = u.Username != "" || u.Password != "" || u.PasswordFile != ""
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
