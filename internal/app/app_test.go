package app

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/internal/config"
)

// running is a whole regcache running in-process on 127.0.0.1.
type running struct {
	Host string
	App  *App
	Data string
	logs *syncBuffer
}

func (m *running) log() string { return m.logs.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	os.Stderr.Write(p)
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMirrorLogged is startMirror keeping the log for assertions.
func startMirrorLogged(t *testing.T, env map[string]string) *running {
	return startMirror(t, env)
}

// startMirror runs the mirror configured by env (REGCACHE_* variables, as
// an operator would set them) and stops it at cleanup.
func startMirror(t *testing.T, env map[string]string) *running { return startMirrorB(t, env) }

// startMirrorB is startMirror for tests and benchmarks.
func startMirrorB(t testing.TB, env map[string]string) *running {
	t.Helper()
	data := t.TempDir()
	base := map[string]string{"REGCACHE_DATA": data, "REGCACHE_ADMIN_ADDR": ""}
	if d, ok := env["REGCACHE_DATA"]; ok {
		data = d
	}
	for k, v := range env {
		base[k] = v
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := base[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := New(t.Context(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("mirror did not stop")
		}
		a.Close()
	})
	return &running{Host: ln.Addr().String(), App: a, Data: data, logs: logs}
}

func TestPullThroughInProcessRegistry(t *testing.T) {
	up := httptest.NewServer(ggcrregistry.New())
	defer up.Close()
	img, err := random.Image(1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	upHost := strings.TrimPrefix(up.URL, "http://")
	ref, _ := name.ParseReference(upHost + "/team/app:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"})
	for i := range 2 {
		got, err := crane.Digest(m.Host+"/team/app:v1", crane.Insecure)
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if got != want.String() {
			t.Fatalf("digest %s, want %s", got, want)
		}
		pulled, err := crane.Pull(m.Host+"/team/app:v1", crane.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(pulled); err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
	up.Close()
	pulled, err := crane.Pull(m.Host+"/team/app:v1", crane.Insecure)
	if err != nil {
		t.Fatalf("pull with upstream stopped: %v", err)
	}
	if err := validate.Image(pulled); err != nil {
		t.Fatal(err)
	}
}
