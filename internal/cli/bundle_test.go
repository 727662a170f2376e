package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/testenv"
)

// TestCacheBundle: a bundle exported from mirror A (fed by the test
// upstream, through its admin API) is imported into the data directory of
// a mirror B that never ran; B, its upstream sealed, serves every exported
// image with the upstream's digests and asks the upstream nothing. skopeo
// reads the same file. A tampered and a truncated bundle are refused,
// naming the file, and leave nothing in the cache.
func TestCacheBundle(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	a := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_PREFETCH": "false"})
	pullImage(t, a.Host+"/single:latest", amd64)
	pullImage(t, a.Host+"/multi:latest", amd64)
	pullImage(t, a.Host+"/oci:latest", amd64)
	waitIndexed(t, a.App, len(imgs.Single.Blobs())+len(imgs.ManifestList.Platforms[0].Blobs())+len(imgs.OCIIndex.Platforms[0].Blobs()))
	dir := t.TempDir()
	bundle := filepath.Join(dir, "bundle.tar")
	if out, err := runCLI(t, "cache", "export", "--admin", a.Admin, "--to", bundle, "single:latest", "multi:latest", "oci:latest"); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "cache", "export", "--admin", a.Admin, "--to", filepath.Join(dir, "x.tar"), "nosuch:1"); err == nil || !strings.Contains(err.Error(), "no cached tag matches") {
		t.Errorf("export of an unknown tag: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); err == nil {
		t.Error("a failed export left its file")
	}

	dataB := filepath.Join(dir, "b")
	out, err := runCLI(t, "cache", "import", "--data", dataB, bundle)
	if err != nil || !strings.Contains(out, "imported docker.io/library/single:latest") || !strings.Contains(out, "imported docker.io/library/multi:latest") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "cache", "import", "--data", dataB, bundle); err != nil || !strings.Contains(out, "0 files written") {
		t.Errorf("import again: %v\n%s", err, out)
	}
	cfg := writeConfig(t, "upstreams:\n  - {name: docker.io, url: '"+hub.URL+"', sealed: true}\n")
	b := apptest.Start(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_DATA": dataB, "REGCACHE_PREFETCH": "false"})
	hub.ResetCounters()
	pullImage(t, b.Host+"/single:latest", amd64)
	pullImage(t, b.Host+"/multi:latest", amd64)
	pullImage(t, b.Host+"/oci:latest", amd64)
	manifestGet(t, b.URL, imgs.Single)
	manifestGet(t, b.URL, imgs.ManifestList)
	manifestGet(t, b.URL, imgs.OCIIndex)
	if rs := hub.Requests(); len(rs) != 0 {
		t.Errorf("mirror B asked its sealed upstream %d times: %+v", len(rs), rs[0])
	}

	// skopeo 1.9 (Debian 12) finds only index.json entries of OCI media
	// types (the OCI index here); Docker-typed ones are kept as they are.
	// skopeo 1.9 (Debian 12) finds only index.json entries of OCI media
	// types (the OCI index here); Docker-typed ones are kept as they are.
	t.Run("into a running mirror", func(t *testing.T) {
		cfg := writeConfig(t, "upstreams:\n  - {name: docker.io, url: '"+hub.URL+"', sealed: true}\n")
		c := apptest.Start(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_PREFETCH": "false", "REGCACHE_ADMIN_ADDR": "127.0.0.1:0"})
		resp, err := http.Get(c.URL + "/v2/single/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("before the import: %s", resp.Status)
		}
		if out, err := runCLI(t, "cache", "import", "--admin", c.Admin, bundle); err != nil || !strings.Contains(out, "imported docker.io/library/single:latest") {
			t.Fatalf("import into a running mirror: %v\n%s", err, out)
		}
		pullImage(t, c.Host+"/single:latest", amd64) // its memory of the miss is not in the way
		manifestGet(t, c.URL, imgs.OCIIndex)
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo := testenv.RequireTool(t, "skopeo")
		cmd := exec.CommandContext(t.Context(), skopeo, "inspect", "--raw", "oci-archive:"+bundle+":docker.io/library/oci:latest")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		raw, err := cmd.Output()
		if err != nil {
			t.Logf("skopeo: %s", stderr.String())
		}
		if err != nil || digest.FromBytes(raw) != imgs.OCIIndex.Digest {
			t.Errorf("skopeo inspect: %v, digest %s, want %s", err, digest.FromBytes(raw), imgs.OCIIndex.Digest)
		}
		// And from mirror B, which was seeded with the bundle: every
		// exported image, with the upstream's digests.
		for _, img := range []testenv.Image{imgs.Single, imgs.ManifestList, imgs.OCIIndex} {
			raw, err := exec.CommandContext(t.Context(), skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+b.Host+"/"+img.Repo+":"+img.Tag).Output()
			if err != nil || digest.FromBytes(raw) != img.Digest {
				t.Errorf("skopeo inspect %s from B: %v, digest %s, want %s", img.Repo, err, digest.FromBytes(raw), img.Digest)
			}
		}
		cmd = exec.CommandContext(t.Context(), skopeo, "copy", "--src-tls-verify=false", "--override-arch", "amd64", "docker://"+b.Host+"/"+imgs.Single.Repo+":latest", "dir:"+t.TempDir())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("skopeo copy from B: %v\n%s", err, out)
		}
		dest := t.TempDir()
		cmd = exec.CommandContext(t.Context(), skopeo, "copy", "--override-arch", "amd64", "oci-archive:"+bundle+":docker.io/library/oci:latest", "dir:"+dest)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("skopeo copy from the bundle: %v\n%s", err, out)
		}
	})

	// dockerd (Debian's, vfs, its own directories) with mirror B as its
	// registry mirror pulls every exported image with the upstream's
	// digests; B asks its sealed upstream nothing.
	t.Run("dockerd", func(t *testing.T) {
		d := testenv.StartDockerd(t, testenv.DockerdOptions{
			Config: fmt.Sprintf(`{"registry-mirrors": [%q], "insecure-registries": [%q]}`, b.URL, b.Host),
		})
		hub.ResetCounters()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		for _, img := range []testenv.Image{imgs.Single, imgs.ManifestList, imgs.OCIIndex} {
			name := strings.TrimPrefix(img.Repo, "library/") + ":" + img.Tag
			if out, err := d.Docker(ctx, "pull", name); err != nil {
				t.Errorf("docker pull %s from the bundle-seeded mirror: %v\n%s\n%s", name, err, out, d.Log())
				continue
			}
			out, err := d.Docker(ctx, "image", "inspect", "--format", "{{join .RepoDigests \" \"}}", name)
			if got, want := strings.TrimSpace(out), strings.TrimPrefix(img.Repo, "library/")+"@"+string(img.Digest); err != nil || got != want {
				t.Errorf("docker pull %s: RepoDigests %q (%v), want %q", name, got, err, want)
			}
		}
		if rs := hub.Requests(); len(rs) != 0 {
			t.Errorf("mirror B asked its sealed upstream %d times during the docker pulls: %+v", len(rs), rs[0])
		}
	})

	layer := imgs.Single.Layers[0].Digest
	tampered := rewriteTar(t, bundle, func(name string, body []byte) []byte {
		if strings.HasSuffix(name, layer.Encoded()) {
			body = bytes.Clone(body)
			body[len(body)/2] ^= 1
		}
		return body
	})
	whole, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.tar")
	if err := os.WriteFile(truncated, whole[:len(whole)*2/3], 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, file, want string }{
		{"tampered", tampered, layer.String()},
		{"truncated", truncated, "truncated"},
	} {
		dataC := filepath.Join(dir, "c-"+tt.name)
		_, err := runCLI(t, "cache", "import", "--data", dataC, tt.file)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s bundle: %v, want an error naming %s", tt.name, err, tt.want)
		}
		c, err := cache.Open(dataC, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _, err := c.Files(context.Background())
		l, lerr := c.List(context.Background(), cache.ListOptions{})
		c.Close()
		if err != nil || lerr != nil || n != 0 || len(l.Images) != 0 {
			t.Errorf("%s bundle left %d files and %d tags (%v %v)", tt.name, n, len(l.Images), err, lerr)
		}
	}
}

// rewriteTar copies a tar file with each file's body passed through fn.
func rewriteTar(t *testing.T, path string, fn func(name string, body []byte) []byte) string {
	t.Helper()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var out bytes.Buffer
	tr, tw := tar.NewReader(in), tar.NewWriter(&out)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		body = fn(h.Name, body)
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	p := path + ".rewritten"
	if err := os.WriteFile(p, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCacheExportResume: an export cut short (its FILE.partial holding
// the first part of the bundle, as a killed export leaves it: cut in the
// middle of an entry, at an entry's end, or with a torn entry whose bytes
// did not all reach the disk) is resumed by running the same command
// again: the whole entries that hash to their names are kept, only the
// rest is written, and the bundle is the same, byte for byte, as one
// written in one go. Export and import show their progress on stderr.
func TestCacheExportResume(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(8<<20))
	a := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_ADMIN_ADDR": "127.0.0.1:0", "REGCACHE_PREFETCH": "false"})
	pullImage(t, a.Host+"/single:latest", amd64)
	pullImage(t, a.Host+"/big:latest", amd64)
	pullImage(t, a.Host+"/multi:latest", amd64)
	waitIndexed(t, a.App, len(imgs.Single.Blobs())+len(imgs.Big.Blobs())+len(imgs.ManifestList.Platforms[0].Blobs()))
	dir := t.TempDir()
	full := filepath.Join(dir, "full.tar")
	out, err := runCLI(t, "cache", "export", "--admin", a.Admin, "-o", full)
	if err != nil || !strings.Contains(out, "exporting 100%") {
		t.Fatalf("export: %v\n%s", err, out)
	}
	whole, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	entries := tarEntryEnds(t, full)
	if len(entries) < 5 {
		t.Fatalf("the bundle has %d entries", len(entries))
	}
	// The big layer's entry: cut inside it, and torn (zeros where its
	// last bytes should be, the file's length intact).
	big := entries[0]
	for _, e := range entries {
		if e.size > big.size {
			big = e
		}
	}
	tests := []struct {
		name    string
		partial []byte
		kept    string // what the resumed run says it kept
	}{
		{"cut inside the big layer", whole[:big.end-big.size/2], "files ("},
		{"cut at an entry's end", whole[:entries[2].end], "2 files ("},
		{"torn entry", append(bytes.Clone(whole[:big.end-4096]), make([]byte, 4096)...), "files ("},
		{"nothing but a header", whole[:300], ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			to := filepath.Join(t.TempDir(), "bundle.tar")
			if err := os.WriteFile(to+".partial", tt.partial, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runCLI(t, "cache", "export", "--admin", a.Admin, "--to", to)
			if err != nil {
				t.Fatalf("resume: %v\n%s", err, out)
			}
			if tt.kept != "" && !strings.Contains(out, "resuming "+to+".partial: ") || !strings.Contains(out, tt.kept) {
				t.Errorf("the resumed export does not say what it kept (%q):\n%s", tt.kept, out)
			}
			got, err := os.ReadFile(to)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, whole) {
				t.Errorf("the resumed bundle (%d bytes) differs from one written in one go (%d bytes)", len(got), len(whole))
			}
			if _, err := os.Stat(to + ".partial"); !os.IsNotExist(err) {
				t.Errorf("%s.partial is still there: %v", to, err)
			}
		})
	}
	// The torn entry's layer was written again, not kept.
	torn := filepath.Join(t.TempDir(), "torn.tar")
	if err := os.WriteFile(torn+".partial", append(bytes.Clone(whole[:big.end-4096]), make([]byte, 4096)...), 0o600); err != nil {
		t.Fatal(err)
	}
	if p, err := scanPartial(torn + ".partial"); err != nil || p.end >= big.end-big.size {
		t.Errorf("the torn entry was kept: %+v %v", p, err)
	}

	out, err = runCLI(t, "cache", "import", "--data", filepath.Join(dir, "b"), full)
	if err != nil || !strings.Contains(out, "importing 100%") || !strings.Contains(out, "imported docker.io/library/big:latest") {
		t.Errorf("import: %v\n%s", err, out)
	}
	// From a stopped mirror's data directory (B, seeded by the bundle),
	// resumed the same way.
	local := filepath.Join(dir, "local.tar")
	if err := os.WriteFile(local+".partial", whole[:big.end-big.size/2], 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, "cache", "export", "--data", filepath.Join(dir, "b"), "-o", local)
	if err != nil || !strings.Contains(out, "resuming ") || !strings.Contains(out, "exporting 100%") {
		t.Fatalf("export from a data directory, resumed: %v\n%s", err, out)
	}
	if got, _ := os.ReadFile(local); !bytes.Equal(got, whole) {
		t.Errorf("the bundle of B's data directory, resumed, differs from A's (%d and %d bytes)", len(got), len(whole))
	}
}

// tarEntry is where one entry of a tar file ends (its padding included)
// and its body's size.
type tarEntry struct {
	name      string
	size, end int64
}

func tarEntryEnds(t *testing.T, path string) []tarEntry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []tarEntry
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		pos, _ := f.Seek(0, io.SeekCurrent)
		out = append(out, tarEntry{name: h.Name, size: h.Size, end: pos + h.Size + (512-h.Size%512)%512})
	}
}
