package app

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve serves the registry API on ln (TLS when configured) and the admin
// API on adminLn (if not nil) until ctx is done, then shuts down gracefully.
func (a *App) Serve(ctx context.Context, ln, adminLn net.Listener) error {
	srv, ln := a.apiServer(ln)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	defer a.background(ctx)()
	servers := []*http.Server{srv}
	if adminLn != nil {
		adm := &http.Server{Handler: a.admin.Guarded(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- adm.Serve(adminLn) }()
		servers = append(servers, adm)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	serr := a.drain(servers)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, ignoreDeadline(serr))
}

// apiServer is the registry API's server, and ln wrapped in TLS when a
// certificate is configured.
func (a *App) apiServer(ln net.Listener) (*http.Server, net.Listener) {
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// No WriteTimeout: it would cut long blob streams.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	if a.certs != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: a.certs.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	return srv, ln
}

// background starts eviction, the scrub, the health probes and the
// dashboard's history, and the cluster's heartbeat; stop ends them and
// waits.
func (a *App) background(ctx context.Context) (stop func()) {
	bctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.evictor.Run(bctx) })
	wg.Go(func() { a.scrub.Run(bctx) })
	if a.cluster != nil {
		wg.Go(func() { a.cluster.Run(bctx) })
	}
	for _, u := range a.upstreams { // at once, then while idle
		wg.Go(func() { u.Client.WatchHealth(bctx, a.config().ProbeInterval) })
	}
	wg.Go(func() { a.admin.Run(bctx) })
	return func() { cancel(); wg.Wait() }
}

// drain stops taking connections and background prefetches, lets the
// responses in flight finish (the fills they stream go on) for up to
// shutdown_timeout, then stops the fills left and cuts what remains. It
// returns the registry API's (servers[0]) shutdown error.
func (a *App) drain(servers []*http.Server) error {
	drain := a.config().ShutdownTimeout
	if drain <= 0 {
		drain = 30 * time.Second
	}
	a.log.Info("shutting down: draining responses in flight", slog.Float64("timeout_seconds", drain.Seconds()), slog.Int("fills_running", a.fills.Active()))
	start := time.Now()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	a.content.Close()
	serr := servers[0].Shutdown(sctx)
	for _, s := range servers[1:] {
		_ = s.Shutdown(sctx)
	}
	if errors.Is(serr, context.DeadlineExceeded) {
		a.log.Warn("shutdown_timeout reached: cutting the responses still in flight", slog.Float64("timeout_seconds", drain.Seconds()), slog.Int("fills_running", a.fills.Active()))
		for _, s := range servers {
			_ = s.Close()
		}
	}
	a.fills.Close()
	if a.cluster != nil {
		a.cluster.Wait() // the fills' leases released
	}
	a.log.Info("stopped", slog.Float64("drain_seconds", time.Since(start).Seconds()))
	return serr
}

func ignoreDeadline(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}
