package cacheindex

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestOpenDamaged: a file that is not a sound index is moved aside and a
// new, empty index opened; a sound one is kept.
func TestOpenDamaged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("garbage!"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	ix, err := Open(path, time.Hour)
	if err != nil {
		t.Fatalf("Open of a damaged file: %v", err)
	}
	if ix.Damaged == "" || ix.Damage == nil {
		t.Fatalf("damage not reported: %q %v", ix.Damaged, ix.Damage)
	}
	if _, err := os.Stat(ix.Damaged); err != nil {
		t.Errorf("the damaged file was not kept aside: %v", err)
	}
	if err := ix.PutBlob(t.Context(), digest.FromString("x"), 1); err != nil {
		t.Fatalf("the new index does not work: %v", err)
	}
	ix.Close()
	ix, err = Open(path, time.Hour)
	if err != nil || ix.Damaged != "" {
		t.Fatalf("a sound index reopened as damaged: %v %q", err, ix.Damaged)
	}
	ix.Close()
}
