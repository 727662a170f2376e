package disk

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/blobstoretest"
)

func TestConformance(t *testing.T) {
	blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
		s, err := New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestStaleTempFilesRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(t.Context(), digest.FromString("x"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("half of x")) // a crash: never committed, never closed
	if n, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(n) != 1 {
		t.Fatalf("temp dir holds %d files, want 1", len(n))
	}
	if _, err := New(dir); err != nil {
		t.Fatal(err)
	}
	if n, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(n) != 0 {
		t.Fatalf("temp files survived a restart: %d", len(n))
	}
}

func TestVerifyRemovesCorruptFile(t *testing.T) {
	dir := t.TempDir()
	s, _ := New(dir)
	d := digest.FromString("hello")
	w, _ := s.Create(t.Context(), d)
	w.Write([]byte("hello"))
	if err := w.Commit(t.Context(), 5); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := s.Verify(t.Context(), d); err != nil {
		t.Fatalf("Verify of good file: %v", err)
	}
	p, _ := s.path(d)
	os.WriteFile(p, []byte("jello"), 0o644)
	if err := s.Verify(t.Context(), d); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("Verify = %v, want ErrDigestMismatch", err)
	}
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal("corrupt file kept")
	}
	if b, err := os.ReadFile(filepath.Join(s.QuarantineDir(), "sha256-"+d.Encoded())); err != nil || string(b) != "jello" {
		t.Fatalf("corrupt file not in quarantine: %q %v", b, err)
	}
}
