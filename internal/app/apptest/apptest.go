// Package apptest starts a whole regcache in-process for tests of other
// packages (real engines, access control, benchmarks): configured the way
// an operator would, through REGCACHE_* variables, listening on 127.0.0.1,
// stopped at cleanup.
package apptest

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/app"
	"github.com/regcache/regcache/internal/config"
)

// Mirror is a running regcache.
type Mirror struct {
	// Host is 127.0.0.1:port of the registry API.
	Host string
	// URL is http://Host.
	URL string
	// Data is the data directory.
	Data string
	// Admin is 127.0.0.1:port of the admin listener, when the test asked
	// for one (REGCACHE_ADMIN_ADDR set, e.g. to 127.0.0.1:0).
	Admin string
	App   *app.App

	logMu sync.Mutex
	log   bytes.Buffer
}

// Log returns everything the mirror logged so far (JSON lines).
func (m *Mirror) Log() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.log.String()
}

type lockedWriter struct{ m *Mirror }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.m.logMu.Lock()
	defer w.m.logMu.Unlock()
	return w.m.log.Write(p)
}

// Start runs a mirror configured by env (REGCACHE_* names, as in
// production; REGCACHE_DATA defaults to a temporary directory and the admin
// listener is off unless set: 127.0.0.1:0 picks a port, see Admin). The log is kept in memory and printed if the
// test fails.
func Start(t testing.TB, env map[string]string) *Mirror {
	t.Helper()
	vars := map[string]string{"REGCACHE_DATA": t.TempDir(), "REGCACHE_ADMIN_ADDR": "", "REGCACHE_LOG_LEVEL": "debug"}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	m := &Mirror{Data: cfg.Data}
	log := slog.New(slog.NewJSONHandler(lockedWriter{m}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.App, m.Host, m.URL = a, ln.Addr().String(), "http://"+ln.Addr().String()
	var adminLn net.Listener
	if cfg.AdminAddr != "" {
		if adminLn, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			t.Fatal(err)
		}
		m.Admin = adminLn.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, adminLn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mirror Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("mirror did not stop within 30s")
		}
		a.Close()
		if t.Failed() {
			t.Logf("regcache log:\n%s", m.Log())
		}
	})
	return m
}
