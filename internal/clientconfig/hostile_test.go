package clientconfig

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSideFileSymlinkOutside: a dangling symlink at a side file that leads
// out of the configuration's directory is refused, and its target is not
// created; one that stays in the directory is followed.
func TestSideFileSymlinkOutside(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	cfg := filepath.Join(dir, "daemon.json")
	os.WriteFile(cfg, []byte("{}"), 0o644)
	evil := filepath.Join(elsewhere, "created-by-root")
	state := cfg + ".regcache-state"
	if err := os.Symlink(evil, state); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(state, []byte("x"), WriteOptions{Side: true}); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("WriteFile through an outward symlink: %v", err)
	}
	if err := os.Symlink(evil, cfg+LockSuffix); err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(cfg); err == nil {
		t.Fatal("Lock through an outward symlink succeeded")
	}
	if err := os.Symlink(evil, cfg+".regcache-backup"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(cfg, []byte(`{"a":1}`), WriteOptions{BackupSuffix: ".regcache-backup"}); err == nil {
		t.Fatal("a backup through an outward symlink was written")
	}
	if _, err := os.Lstat(evil); err == nil {
		t.Fatal("the link's target outside the directory was created")
	}
	inside := filepath.Join(dir, "state.real")
	other := filepath.Join(dir, "other.json")
	if err := os.Symlink(inside, other+".regcache-state"); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(other+".regcache-state", []byte("x"), WriteOptions{Side: true}); err != nil {
		t.Fatalf("a symlink inside the directory: %v", err)
	}
}

// TestReadFileHostile: a FIFO is refused at once (not waited on), a file
// over MaxFileSize is refused without being read.
func TestReadFileHostile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "daemon.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := ReadFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("ReadFile of a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadFile of a FIFO hangs")
	}
	if err := CheckSideFile(fifo); err == nil {
		t.Fatal("a FIFO side file passed the check")
	}
	big := filepath.Join(dir, "big.json")
	f, _ := os.Create(big)
	f.Truncate(100 << 20)
	f.Close()
	if _, _, err := ReadFile(big); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("ReadFile of 100 MiB: %v", err)
	}
}
