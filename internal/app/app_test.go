package app

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/internal/config"
)

// startMirror runs the whole mirror in-process on 127.0.0.1 in front of
// upstreamURL and returns its host:port.
func startMirror(t *testing.T, upstreamURL string) string {
	t.Helper()
	cfg, err := config.Load(nil, func(k string) (string, bool) {
		switch k {
		case "REGCACHE_UPSTREAM_URL":
			return upstreamURL, true
		case "REGCACHE_UPSTREAM_NAME":
			return "docker.io", true
		case "REGCACHE_DATA":
			return t.TempDir(), true
		case "REGCACHE_ADMIN_ADDR":
			return "", true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("mirror did not stop")
		}
		a.Close()
	})
	return ln.Addr().String()
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
	mirror := startMirror(t, up.URL)
	for i := range 2 {
		got, err := crane.Digest(mirror+"/team/app:v1", crane.Insecure)
		if err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
		if got != want.String() {
			t.Fatalf("digest %s, want %s", got, want)
		}
		pulled, err := crane.Pull(mirror+"/team/app:v1", crane.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := validateImage(pulled); err != nil {
			t.Fatalf("pull %d: %v", i, err)
		}
	}
	up.Close()
	pulled, err := crane.Pull(mirror+"/team/app:v1", crane.Insecure)
	if err != nil {
		t.Fatalf("pull with upstream stopped: %v", err)
	}
	if err := validateImage(pulled); err != nil {
		t.Fatal(err)
	}
}
