package cacheindex

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestTagsManifestsHolds(t *testing.T) {
	dir := t.TempDir()
	ix, err := Open(filepath.Join(dir, "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("m")
	layer := digest.FromString("l")
	now := time.Now().UTC().Truncate(time.Second)
	if err := ix.PutTag("docker.io", "library/alpine", "3.20", TagEntry{Digest: d, MediaType: "x", Fetched: now, Checked: now}); err != nil {
		t.Fatal(err)
	}
	if err := ix.PutManifest("docker.io", "library/alpine", d, ManifestEntry{MediaType: "x", Size: 10, Refs: []digest.Digest{layer}}); err != nil {
		t.Fatal(err)
	}
	e, ok, err := ix.Tag("docker.io", "library/alpine", "3.20")
	if err != nil || !ok || e.Digest != d || !e.Checked.Equal(now) {
		t.Fatalf("Tag = %+v %v %v", e, ok, err)
	}
	if _, ok, _ := ix.Tag("ghcr.io", "library/alpine", "3.20"); ok {
		t.Fatal("tags of two upstreams mixed")
	}
	for _, tc := range []struct {
		up, repo string
		d        digest.Digest
		want     bool
	}{
		{"docker.io", "library/alpine", layer, true},
		{"docker.io", "library/alpine", d, true},
		{"docker.io", "library/busybox", layer, false},
		{"ghcr.io", "library/alpine", layer, false},
	} {
		if got, _ := ix.Holds(tc.up, tc.repo, tc.d); got != tc.want {
			t.Errorf("Holds(%s, %s, %s) = %v", tc.up, tc.repo, tc.d, got)
		}
	}
	n := 0
	ix.Tags(func(up, repo, tag string, e TagEntry) error {
		if up != "docker.io" || repo != "library/alpine" || tag != "3.20" {
			t.Errorf("Tags gave %q %q %q", up, repo, tag)
		}
		n++
		return nil
	})
	if n != 1 {
		t.Fatalf("Tags visited %d", n)
	}
	ix.Close()
	ix, err = Open(filepath.Join(dir, "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, ok, _ := ix.Tag("docker.io", "library/alpine", "3.20"); !ok {
		t.Fatal("tag lost across reopen")
	}
}

func TestTouchIsBatched(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ix, err := Open(filepath.Join(t.TempDir(), "index.db"), time.Hour, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	d := digest.FromString("b")
	ix.PutBlob(d, 5)
	now = now.Add(time.Hour)
	ix.Touch(d)
	e, _, _ := ix.Blob(d)
	if !e.LastAccess.Equal(now.Add(-time.Hour)) {
		t.Fatalf("Touch wrote through before a flush: %v", e.LastAccess)
	}
	if err := ix.Flush(); err != nil {
		t.Fatal(err)
	}
	e, _, _ = ix.Blob(d)
	if !e.LastAccess.Equal(now) || e.Size != 5 {
		t.Fatalf("after flush: %+v", e)
	}
}

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
	if err := ix.PutBlob(digest.FromString("x"), 1); err != nil {
		t.Fatalf("the new index does not work: %v", err)
	}
	ix.Close()
	ix, err = Open(path, time.Hour)
	if err != nil || ix.Damaged != "" {
		t.Fatalf("a sound index reopened as damaged: %v %q", err, ix.Damaged)
	}
	ix.Close()
}
