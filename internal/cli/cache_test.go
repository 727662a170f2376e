package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/app"
	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/cache"
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
// it, and runs ls, stats, verify, rm and prune on it; a mirror started on
// the result afterwards still serves every image.
func TestCacheCommands(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	data := t.TempDir()
	env := map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data}

	t.Run("populate, and locked while the mirror runs with no admin listener", func(t *testing.T) {
		m := apptest.Start(t, env)
		if out, err := runCLI(t, "warm", "--mirror", m.URL, "--all-platforms", "single", "multi"); err != nil {
			t.Fatalf("warm: %v\n%s", err, out)
		}
		cfg := writeConfig(t, "data: "+data+"\nadmin_addr: \"\"\n")
		for _, args := range [][]string{{"ls"}, {"verify"}, {"prune", "--to-size", "1"}, {"rm", "single"}} {
			start := time.Now()
			_, err := runCLI(t, append(append([]string{"cache"}, args...), "--config", cfg)...)
			if err == nil || !strings.Contains(err.Error(), "regcache serve using this data directory") || !strings.Contains(err.Error(), "pass --admin") {
				t.Errorf("cache %s while the mirror runs: %v", args[0], err)
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("cache %s took %s to notice the lock", args[0], el)
			}
		}
	}) // the mirror stops here

	run := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		return runCLI(t, append(append([]string{"cache"}, args...), "--data", data)...)
	}
	exerciseCache(t, hub, imgs, data, "", run)

	// The mirror serves everything again from what the commands left.
	m := apptest.Start(t, env)
	hub.ResetCounters()
	pullImage(t, m.Host+"/single:latest", amd64)
	pullImage(t, m.Host+"/multi:latest", arm64)
	if hubBlobGets(hub) == 0 {
		t.Error("the pulls after prune fetched nothing upstream: what did prune remove?")
	}
}

// TestCacheCommandsRunning runs the same commands on a running mirror
// through its admin listener (which has an admin token): by --admin as
// host:port and as a URL, and by the admin address of --config when the
// data directory is locked; a change without the token is refused.
func TestCacheCommandsRunning(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	data := t.TempDir()
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data,
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_ADMIN_TOKEN": "s3cret-admin-token-1", "REGCACHE_SCRUB_INTERVAL": "0"})
	if out, err := runCLI(t, "warm", "--mirror", m.URL, "--all-platforms", "single", "multi"); err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	waitIndexed(t, m.App, len(imgs.Single.Blobs())+len(imgs.ManifestList.Blobs()))
	cfg := writeConfig(t, "data: "+data+"\nadmin_addr: "+m.Admin+"\nadmin_token: s3cret-admin-token-1\n")
	out, err := runCLI(t, "cache", "ls", "--config", cfg)
	if err != nil || !strings.Contains(out, "asking it through its admin listener at "+m.Admin) || !strings.Contains(out, "library/single") {
		t.Errorf("ls by --config on a running mirror: %v\n%s", err, out)
	}
	wrong := writeConfig(t, "data: "+data+"\nadmin_addr: 127.0.0.1:9\n")
	if _, err := runCLI(t, "cache", "ls", "--config", wrong); err == nil || !strings.Contains(err.Error(), "pass --admin HOST:PORT") {
		t.Errorf("ls with a wrong admin_addr: %v", err)
	}
	if _, err := runCLI(t, "cache", "prune", "--to-size", "1", "--admin", m.Admin); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "--admin-token") {
		t.Errorf("prune without the admin token: %v", err)
	}
	if out, err := runCLI(t, "cache", "stats", "--admin", "http://"+m.Admin+"/"); err != nil || !strings.Contains(out, "running (answered by its admin listener)") {
		t.Errorf("stats by URL: %v\n%s", err, out)
	}
	i := 0
	run := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		i++
		if i%2 == 0 { // both ways of reaching it, in turn
			return runCLI(t, append(append([]string{"cache"}, args...), "--admin", m.Admin, "--admin-token", "s3cret-admin-token-1")...)
		}
		out, err := runCLI(t, append(append([]string{"cache"}, args...), "--config", cfg)...)
		out = strings.Replace(out, data+" is in use by a running regcache: asking it through its admin listener at "+m.Admin+" (--admin)\n", "", 1)
		return out, err
	}
	exerciseCache(t, hub, imgs, data, m.Host, run)
	// The running mirror fetches what the commands removed.
	hub.ResetCounters()
	pullImage(t, m.Host+"/single:latest", amd64)
	pullImage(t, m.Host+"/multi:latest", arm64)
	if hubBlobGets(hub) == 0 {
		t.Error("the pulls after prune fetched nothing upstream: what did prune remove?")
	}
}

// waitIndexed waits until the mirror's index holds n blobs: commits land
// after the last byte is served.
func waitIndexed(t *testing.T, a *app.App, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for indexedBlobs(t, a) < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("the index holds %d blobs 20 s after the pulls, want %d", indexedBlobs(t, a), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// indexedBlobs is the blobs the running mirror's index holds, as its
// admin API's /cache/stats says.
func indexedBlobs(t *testing.T, a *app.App) int64 {
	t.Helper()
	w := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/cache/stats", nil))
	var st cache.CacheStats
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatalf("/cache/stats: %d %v", w.Code, err)
	}
	return st.Totals.Blobs
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "regcache.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// exerciseCache runs every cache command on a cache holding single and
// multi (all platforms), through cache.
func exerciseCache(t *testing.T, hub *testenv.Hub, imgs testenv.Images, data string, mirrorHost string, run func(t *testing.T, args ...string) (string, error)) {
	t.Helper()
	all := append(imgs.Single.Blobs(), imgs.ManifestList.Blobs()...)

	out, err := run(t, "ls")
	if err != nil {
		t.Fatalf("ls: %v", err)
	}
	for _, want := range []string{"UPSTREAM", "SIZE", "LAST USE", "docker.io", "library/single", "latest", string(imgs.Single.Digest),
		string(imgs.ManifestList.Digest), "2 tags; " + itoa(len(all)) + " blobs"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, "ls", "--upstream", "docker.io", "--repository", "multi")
	if err != nil || strings.Contains(out, "library/single") || !strings.Contains(out, "library/multi") || !strings.Contains(out, "1 of 2 tags") {
		t.Errorf("ls of one repository: %v\n%s", err, out)
	}
	out, err = run(t, "ls", "--sort", "size", "--json")
	if err != nil {
		t.Fatalf("ls --json: %v", err)
	}
	var l cache.Listing
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Images) != 2 || l.Images[0].Size < l.Images[1].Size || l.Images[0].Size == 0 {
		t.Errorf("ls --sort size --json: %v\n%s", err, out)
	}
	out, err = run(t, "ls", "--blobs")
	if err != nil {
		t.Fatalf("ls --blobs: %v", err)
	}
	for _, b := range all {
		if !strings.Contains(out, string(b.Digest)) {
			t.Errorf("ls --blobs lacks %s:\n%s", b.Digest, out)
		}
	}
	if out, err := run(t, "stats"); err != nil || !strings.Contains(out, "blobs") || !strings.Contains(out, itoa(len(all))) {
		t.Errorf("stats: %v\n%s", err, out)
	}

	// Damage on disk: a flipped byte, a truncated blob, an overwritten
	// manifest, and a file that disappears.
	flipped, truncated, lost := imgs.Single.Layers[0], imgs.ManifestList.Platforms[0].Layers[0], imgs.Single.Config
	manifest := imgs.ManifestList.Platforms[1].Digest
	b, err := os.ReadFile(blobPath(data, flipped.Digest))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(blobPath(data, flipped.Digest), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(blobPath(data, truncated.Digest), truncated.Size/2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blobPath(data, manifest), []byte(`{"schemaVersion":2,"layers":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(blobPath(data, lost.Digest)); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "verify")
	if err == nil || !strings.Contains(err.Error(), "damaged (3 damaged files, 1 lost") {
		t.Errorf("verify of a damaged cache: %v", err)
	}
	for _, d := range []digest.Digest{flipped.Digest, truncated.Digest, manifest} {
		if !strings.Contains(out, "damaged: "+string(d)) || !strings.Contains(err.Error(), string(d)) {
			t.Errorf("verify does not name %s:\n%s", d, out)
		}
		if exists(t, blobPath(data, d)) {
			t.Errorf("verify left the damaged file %s in the store", d)
		}
		if !exists(t, filepath.Join(data, "quarantine", "sha256-"+d.Encoded())) {
			t.Errorf("verify did not quarantine %s", d)
		}
	}
	for _, want := range []string{"missing: " + string(lost.Digest), "3 damaged (quarantined)", "verifying 100%"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if mirrorHost != "" { // the running mirror fetches good copies of what verify dropped
		for _, f := range []struct {
			repo, kind string
			d          digest.Digest
		}{{"single", "blobs", flipped.Digest}, {"multi", "blobs", truncated.Digest}, {"multi", "manifests", manifest}} {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+mirrorHost+"/v2/"+f.repo+"/"+f.kind+"/"+string(f.d), nil)
			req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != f.d {
				t.Errorf("GET %s after verify: %d, %v, body hashes to %s", f.d, resp.StatusCode, err, digest.FromBytes(body))
			}
		}
	}
	if out, err := run(t, "verify"); err != nil || !strings.Contains(out, "0 damaged") {
		t.Errorf("second verify: %v\n%s", err, out)
	}
	if out, _ := run(t, "ls", "--blobs"); mirrorHost == "" && (strings.Contains(out, string(flipped.Digest)) || strings.Contains(out, string(lost.Digest)) || strings.Contains(out, string(truncated.Digest))) {
		t.Errorf("ls --blobs still lists removed blobs:\n%s", out)
	}
	if out, err := run(t, "stats"); err != nil || !strings.Contains(out, "3 files") {
		t.Errorf("stats does not count the quarantine: %v\n%s", err, out)
	}

	// rm: a tag, dry and for real (its image goes with it); a digest;
	// things that are not there.
	if out, err := run(t, "rm", "--dry-run", "single"); err != nil || !strings.Contains(out, "would remove docker.io/library/single:latest") {
		t.Errorf("rm --dry-run: %v\n%s", err, out)
	}
	if out, _ := run(t, "ls"); !strings.Contains(out, "library/single") || !exists(t, blobPath(data, imgs.Single.Digest)) {
		t.Error("rm --dry-run removed the tag or its manifest")
	}
	if out, err := run(t, "rm", "docker.io/single:latest"); err != nil || !strings.Contains(out, "removed docker.io/library/single:latest") {
		t.Errorf("rm tag: %v\n%s", err, out)
	}
	for _, b := range imgs.Single.Blobs() {
		if exists(t, blobPath(data, b.Digest)) {
			t.Errorf("rm of the tag left %s of its image", b.Digest)
		}
	}
	if out, _ := run(t, "ls"); strings.Contains(out, "library/single") || !strings.Contains(out, "1 tags") {
		t.Errorf("ls after rm:\n%s", out)
	}
	if _, err := run(t, "rm", "single"); err == nil || !strings.Contains(err.Error(), "no cached tag matches single") {
		t.Errorf("rm of a forgotten tag: %v", err)
	}
	layer := imgs.ManifestList.Platforms[1].Layers[0]
	if out, err := run(t, "rm", string(layer.Digest)); err != nil || !strings.Contains(out, "deleted "+string(layer.Digest)) {
		t.Errorf("rm digest: %v\n%s", err, out)
	}
	if exists(t, blobPath(data, layer.Digest)) {
		t.Error("rm left the blob file")
	}
	if _, err := run(t, "rm", string(layer.Digest)); err == nil || !strings.Contains(err.Error(), "is not in the cache") {
		t.Errorf("rm of a deleted digest: %v", err)
	}
	if _, err := run(t, "rm", "Bad:Name"); err == nil || !strings.Contains(err.Error(), "invalid image") {
		t.Errorf("rm of a bad name: %v", err)
	}

	// prune: nothing without a bound; dry run; then for real.
	if _, err := run(t, "prune"); err == nil || !strings.Contains(err.Error(), "--to-size") {
		t.Errorf("prune without a bound: %v", err)
	}
	if _, err := run(t, "prune", "--to-size", "lots"); err == nil || !strings.Contains(err.Error(), `--to-size "lots"`) {
		t.Errorf("prune with a bad size: %v", err)
	}
	out, err = run(t, "prune", "--to-size", "1", "--dry-run")
	if err != nil || !strings.Contains(out, "would remove image "+string(imgs.ManifestList.Digest)+" (docker.io/library/multi:latest)") || !strings.Contains(out, "0 B would be left") {
		t.Errorf("prune --dry-run: %v\n%s", err, out)
	}
	if !exists(t, blobPath(data, imgs.ManifestList.Platforms[1].Config.Digest)) {
		t.Error("prune --dry-run removed a file")
	}
	out, err = run(t, "prune", "--to-size", "1")
	if err != nil || !strings.Contains(out, "removed image "+string(imgs.ManifestList.Digest)) || !strings.Contains(out, "0 B left (0 blobs, 0 manifests)") {
		t.Errorf("prune: %v\n%s", err, out)
	}
	for _, b := range all {
		if exists(t, blobPath(data, b.Digest)) {
			t.Errorf("prune left %s", b.Digest)
		}
	}
	if out, err := run(t, "prune", "--older-than", "1h"); err != nil || !strings.Contains(out, "removed 0 images") {
		t.Errorf("prune of an empty cache: %v\n%s", err, out)
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
	for _, args := range [][]string{{"warm"}, {"cache"}, {"cache", "ls"}, {"cache", "verify"}, {"cache", "prune"}, {"cache", "rm"}, {"cache", "invalidate"}, {"cache", "export"}, {"cache", "import"}, {"cache", "stats"}} {
		out, err := runCLI(t, append(args, "--help")...)
		if err != nil || !strings.Contains(out, "Examples:") || !strings.Contains(out, "regcache "+args[0]) {
			t.Errorf("%v --help: %v\n%s", args, err, out)
		}
	}
}

// TestCacheNoIndexRunningMirror: with no cache index in the configured
// data directory (the default ./data on a host whose mirror runs in a
// container) and a running mirror at the configuration's admin_addr, the
// commands ask it and say so; with --data given, or nothing answering,
// they say what is missing and what they tried.
func TestCacheNoIndexRunningMirror(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_SCRUB_INTERVAL": "0"})
	if out, err := runCLI(t, "warm", "--mirror", m.URL, "single"); err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	waitIndexed(t, m.App, len(imgs.Single.Blobs()))
	elsewhere := filepath.Join(t.TempDir(), "data")
	cfg := writeConfig(t, "data: "+elsewhere+"\nadmin_addr: "+m.Admin+"\n")
	out, err := runCLI(t, "cache", "ls", "--config", cfg)
	if err != nil || !strings.Contains(out, "no cache index at "+elsewhere+": asking the running regcache at "+m.Admin) || !strings.Contains(out, "library/single") {
		t.Errorf("ls with no index and a running mirror: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "cache", "ls", "--config", cfg, "--data", elsewhere); err == nil || !strings.Contains(err.Error(), "no cache index at") {
		t.Errorf("ls with --data of no index: %v", err)
	}
	dead := writeConfig(t, "data: "+elsewhere+"\nadmin_addr: 127.0.0.1:"+itoa(testenv.FreePort(t))+"\n")
	if _, err := runCLI(t, "cache", "ls", "--config", dead); err == nil || !strings.Contains(err.Error(), "no cache index at") || !strings.Contains(err.Error(), "no regcache answers at") {
		t.Errorf("ls with no index and no mirror: %v", err)
	}
}
