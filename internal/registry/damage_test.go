package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

// storeFile is where the disk store keeps d.
func (e *env) storeFile(t *testing.T, d digest.Digest) string {
	t.Helper()
	// A blob is committed just after its last byte reached the client.
	for deadline := time.Now().Add(10 * time.Second); !e.storeHolds(t, d) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var path string
	filepath.WalkDir(e.storeDir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() && de.Name() == d.Encoded() {
			path = p
		}
		return nil
	})
	if path == "" {
		t.Fatalf("no file for %s in the store", d)
	}
	return path
}

// TestDamageOnDiskNeverServed: a manifest overwritten on disk and a blob
// truncated on disk are not served: each is dropped, fetched again from
// upstream, and the client gets the right bytes.
func TestDamageOnDiskNeverServed(t *testing.T) {
	e := newEnv(t, envOptions{noMemory: true})
	img := e.imgs.Single
	if _, err := e.pull(t, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.storeFile(t, img.Digest), []byte(`{"schemaVersion":2,"evil":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	layer := img.Layers[0]
	if err := os.Truncate(e.storeFile(t, layer.Digest), 10); err != nil {
		t.Fatal(err)
	}
	e.hub.ResetCounters()
	if d, err := e.pull(t, img); err != nil || d != string(img.Digest) {
		t.Fatalf("pull after damage: %s %v", d, err)
	}
	if n := e.hub.Count("GET", testenv.KindManifest); n != 1 {
		t.Errorf("the overwritten manifest was fetched %d times, want once", n)
	}
	if n := e.hub.Count("GET", testenv.KindBlob); n != 1 {
		t.Errorf("the truncated layer was fetched %d times, want once", n)
	}
	// And the copy now on disk is good.
	b, err := os.ReadFile(e.storeFile(t, layer.Digest))
	sum := sha256.Sum256(b)
	if err != nil || "sha256:"+hex.EncodeToString(sum[:]) != string(layer.Digest) {
		t.Errorf("the layer on disk after the refetch is not the layer")
	}
}
