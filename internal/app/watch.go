package app

import (
	"context"
	"sync"
)

// watch starts the upstreams' health probes (at once, then while idle)
// and the dashboard's history sampler; the returned function stops them
// and waits.
func (a *App) watch(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range a.upstreams {
		wg.Go(func() { u.Client.WatchHealth(ctx, a.config().ProbeInterval) })
	}
	wg.Go(func() { a.admin.Run(ctx) })
	return func() { cancel(); wg.Wait() }
}
