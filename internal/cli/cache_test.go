package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

func blobPath(data string, d digest.Digest) string {
	return filepath.Join(data, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Stat(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestCacheCommands populates a data directory with a real mirror, stops
// it, and runs ls, verify, rm and prune on it; a mirror started on the
// result afterwards still serves every image.
func TestCacheCommands(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	data := t.TempDir()
	env := map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data}

	t.Run("populate, and locked while the mirror runs", func(t *testing.T) {
		m := apptest.Start(t, env)
		if out, err := runCLI(t, "warm", "--mirror", m.URL, "--all-platforms", "single", "multi"); err != nil {
			t.Fatalf("warm: %v\n%s", err, out)
		}
		for _, args := range [][]string{{"ls"}, {"verify"}, {"prune", "--max-size", "1"}, {"rm", "single"}} {
			start := time.Now()
			_, err := runCLI(t, append(append([]string{"cache"}, args...), "--data", data)...)
			if err == nil || !strings.Contains(err.Error(), "regcache serve using this data directory") || !strings.Contains(err.Error(), "stop it first") {
				t.Errorf("cache %s while the mirror runs: %v", args[0], err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("cache %s took %s to notice the lock", args[0], el)
			}
		}
	}) // the mirror stops here

	cache := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append(append([]string{"cache"}, args...), "--data", data)...)
	}
	all := append(imgs.Single.Blobs(), imgs.ManifestList.Blobs()...)

	out, err := cache(t, "ls")
	if err != nil {
		t.Fatalf("ls: %v", err)
	}
	for _, want := range []string{"UPSTREAM", "docker.io", "library/single", "latest", string(imgs.Single.Digest),
		string(imgs.ManifestList.Digest), "2 tags; " + itoa(len(all)) + " blobs"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls lacks %q:\n%s", want, out)
		}
	}
	out, err = cache(t, "ls", "--blobs")
	if err != nil {
		t.Fatalf("ls --blobs: %v", err)
	}
	for _, b := range all {
		if !strings.Contains(out, string(b.Digest)) {
			t.Errorf("ls --blobs lacks %s:\n%s", b.Digest, out)
		}
	}

	// One layer rots on disk; one config file disappears.
	corrupt, lost := imgs.Single.Layers[0], imgs.Single.Config
	if err := os.WriteFile(blobPath(data, corrupt.Digest), bytes.Repeat([]byte("x"), int(corrupt.Size)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(blobPath(data, lost.Digest)); err != nil {
		t.Fatal(err)
	}
	out, err = cache(t, "verify")
	if err == nil || !strings.Contains(err.Error(), "damaged (1 corrupt files, 1 lost files)") {
		t.Errorf("verify of a damaged cache: %v", err)
	}
	for _, want := range []string{"corrupt: " + string(corrupt.Digest), "missing: " + string(lost.Digest), "1 corrupt (removed)"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if exists(t, blobPath(data, corrupt.Digest)) {
		t.Error("verify left the corrupt file")
	}
	if out, err := cache(t, "verify"); err != nil || !strings.Contains(out, "0 corrupt") {
		t.Errorf("second verify: %v\n%s", err, out)
	}
	if out, _ := cache(t, "ls", "--blobs"); strings.Contains(out, string(corrupt.Digest)) || strings.Contains(out, string(lost.Digest)) {
		t.Errorf("ls --blobs still lists removed blobs:\n%s", out)
	}

	// rm: a tag, dry and for real; a digest; things that are not there.
	if out, err := cache(t, "rm", "--dry-run", "single"); err != nil || !strings.Contains(out, "would forget docker.io/library/single:latest") {
		t.Errorf("rm --dry-run: %v\n%s", err, out)
	}
	if out, _ := cache(t, "ls"); !strings.Contains(out, "library/single") {
		t.Error("rm --dry-run forgot the tag")
	}
	if out, err := cache(t, "rm", "docker.io/single:latest"); err != nil || !strings.Contains(out, "forgot docker.io/library/single:latest") {
		t.Errorf("rm tag: %v\n%s", err, out)
	}
	if out, _ := cache(t, "ls"); strings.Contains(out, "library/single") || !strings.Contains(out, "1 tags") {
		t.Errorf("ls after rm:\n%s", out)
	}
	if _, err := cache(t, "rm", "single"); err == nil || !strings.Contains(err.Error(), "no cached tag matches single") {
		t.Errorf("rm of a forgotten tag: %v", err)
	}
	layer := imgs.ManifestList.Platforms[1].Layers[0]
	if out, err := cache(t, "rm", string(layer.Digest)); err != nil || !strings.Contains(out, "deleted "+string(layer.Digest)) {
		t.Errorf("rm digest: %v\n%s", err, out)
	}
	if exists(t, blobPath(data, layer.Digest)) {
		t.Error("rm left the blob file")
	}
	if _, err := cache(t, "rm", string(layer.Digest)); err == nil || !strings.Contains(err.Error(), "is not in the cache") {
		t.Errorf("rm of a deleted digest: %v", err)
	}
	if _, err := cache(t, "rm", "Bad:Name"); err == nil || !strings.Contains(err.Error(), "invalid image") {
		t.Errorf("rm of a bad name: %v", err)
	}

	// prune: nothing without a bound; dry run; then for real.
	if _, err := cache(t, "prune"); err == nil || !strings.Contains(err.Error(), "--max-size") {
		t.Errorf("prune without a bound: %v", err)
	}
	if _, err := cache(t, "prune", "--max-size", "lots"); err == nil || !strings.Contains(err.Error(), `invalid size "lots"`) {
		t.Errorf("prune with a bad size: %v", err)
	}
	left := len(all) - 3 // corrupt, lost, rm
	out, err = cache(t, "prune", "--max-size", "1", "--dry-run")
	if err != nil || !strings.Contains(out, "would remove "+itoa(left)+" blobs") || !strings.Contains(out, "0 blobs, 0 B left") {
		t.Errorf("prune --dry-run: %v\n%s", err, out)
	}
	if !exists(t, blobPath(data, imgs.ManifestList.Platforms[0].Layers[0].Digest)) {
		t.Error("prune --dry-run removed a file")
	}
	out, err = cache(t, "prune", "--max-size", "1")
	if err != nil || !strings.Contains(out, "removed "+itoa(left)+" blobs") {
		t.Errorf("prune: %v\n%s", err, out)
	}
	for _, b := range all {
		if exists(t, blobPath(data, b.Digest)) {
			t.Errorf("prune left %s", b.Digest)
		}
	}
	if out, err := cache(t, "prune", "--max-age", "1h"); err != nil || !strings.Contains(out, "removed 0 blobs") {
		t.Errorf("prune of an empty cache: %v\n%s", err, out)
	}

	// The mirror serves everything again from what the commands left.
	m := apptest.Start(t, env)
	hub.ResetCounters()
	pullImage(t, m.Host+"/single:latest", amd64)
	pullImage(t, m.Host+"/multi:latest", arm64)
	if hubBlobGets(hub) == 0 {
		t.Error("the pulls after prune fetched nothing upstream: what did prune remove?")
	}
}

func TestCacheMissingDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, err := runCLI(t, "cache", "ls", "--data", dir)
	if err == nil || !strings.Contains(err.Error(), "no cache index at "+filepath.Join(dir, "index.db")) {
		t.Errorf("ls of an empty directory: %v", err)
	}
	if exists(t, filepath.Join(dir, "index.db")) {
		t.Error("ls created an index")
	}
}

func TestCacheHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"warm"}, {"cache"}, {"cache", "ls"}, {"cache", "verify"}, {"cache", "prune"}, {"cache", "rm"}} {
		out, err := runCLI(t, append(args, "--help")...)
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "regcache "+args[0]) {
			t.Errorf("%v --help: %v\n%s", args, err, out)
		}
	}
}
