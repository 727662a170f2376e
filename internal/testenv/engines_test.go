package testenv

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStartDockerd(t *testing.T) {
	d := StartDockerd(t, DockerdOptions{Config: `{"registry-mirrors": ["http://127.0.0.1:1"]}`})
	mirrors, err := d.Mirrors(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(mirrors) != 1 || !strings.HasPrefix(mirrors[0], "http://127.0.0.1:1") {
		t.Fatalf("mirrors %q", mirrors)
	}
	// SIGHUP reloads registry-mirrors without a restart.
	if err := os.WriteFile(d.ConfigFile, []byte(`{"registry-mirrors": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(d.PID, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mirrors, err = d.Mirrors(t.Context())
		if err == nil && len(mirrors) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mirrors after SIGHUP: %q %v\n%s", mirrors, err, d.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !d.Running() {
		t.Fatal("dockerd exited on SIGHUP")
	}
	if out, err := d.Docker(t.Context(), "version", "--format", "{{.Server.Version}}"); err != nil {
		t.Fatalf("docker CLI: %v %s", err, out)
	}
}

func TestStartContainerd(t *testing.T) {
	c := StartContainerd(t, ContainerdOptions{})
	if out, err := c.Ctr(t.Context(), "images", "ls"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
}

func TestPodman(t *testing.T) {
	p := NewPodman(t, PodmanOptions{})
	out, err := p.Run(t.Context(), "info", "--format", "{{.Store.GraphRoot}} {{.Store.GraphDriverName}}")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != p.Root+" vfs" {
		t.Fatalf("podman storage %q, want %q", got, p.Root+" vfs")
	}
}
