package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
)

// hubMirror is a regcache whose Docker Hub is a testenv.Hub seeded with
// the standard images.
func hubMirror(t *testing.T, env map[string]string) (*testenv.Hub, testenv.Images, *apptest.Mirror) {
	t.Helper()
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	vars := map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"}
	for k, v := range env {
		vars[k] = v
	}
	return hub, imgs, apptest.Start(t, vars)
}

// pullImage pulls ref (host/repo:tag) for platform like crane does: the
// manifest, the config and every layer, read to the end.
func pullImage(t *testing.T, ref string, p v1.Platform) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithPlatform(p), remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		t.Fatalf("pull %s config: %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("pull %s layer: %v", ref, err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("pull %s layer: %v", ref, err)
		}
		rc.Close()
	}
}

func hubBlobGets(h *testenv.Hub) int {
	return h.Count("GET", testenv.KindBlob) + h.Count("GET", testenv.KindCDN)
}

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
)

// TestWarmThenPullIsCached warms a single-platform image, a manifest list
// and a pinned OCI index; pulling them afterwards costs the upstream no
// blob request at all.
func TestWarmThenPullIsCached(t *testing.T) {
	t.Parallel()
	hub, imgs, m := hubMirror(t, nil)
	out, err := runCLI(t, "warm", "--mirror", m.URL, "--platform", "linux/amd64",
		"single", "docker.io/library/multi:latest", "oci@"+string(imgs.OCIIndex.Digest))
	if err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	for _, want := range []string{"warmed 3 of 3 images", "single: done: 3 blobs", "docker.io/library/multi:latest: linux/amd64: 3 blobs", "docker.io/library/multi:latest: done: 3 blobs"} {
		if !strings.Contains(out, want) {
			t.Errorf("warm output lacks %q:\n%s", want, out)
		}
	}
	if hubBlobGets(hub) == 0 {
		t.Fatal("warm fetched no blob from the upstream")
	}
	hub.ResetCounters()
	pullImage(t, m.Host+"/single:latest", amd64)
	pullImage(t, m.Host+"/multi:latest", amd64)
	pullImage(t, m.Host+"/oci@"+string(imgs.OCIIndex.Digest), amd64)
	if n := hubBlobGets(hub); n != 0 {
		t.Errorf("pulls after warm made %d blob GETs upstream, want 0: %v", n, hub.Requests())
	}

	// The arm64 image of the list was not asked for; warming it with
	// --platform (variant v8 in the OCI index matches linux/arm64) fills it.
	out, err = runCLI(t, "warm", "--mirror", m.URL, "--platform", "linux/arm64", "multi", "oci@"+string(imgs.OCIIndex.Digest))
	if err != nil {
		t.Fatalf("warm arm64: %v\n%s", err, out)
	}
	hub.ResetCounters()
	pullImage(t, m.Host+"/multi:latest", arm64)
	pullImage(t, m.Host+"/oci@"+string(imgs.OCIIndex.Digest), v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	if n := hubBlobGets(hub); n != 0 {
		t.Errorf("arm64 pulls after warm made %d blob GETs upstream, want 0", n)
	}
}

func TestWarmAllPlatforms(t *testing.T) {
	t.Parallel()
	hub, imgs, m := hubMirror(t, nil)
	out, err := runCLI(t, "warm", "--mirror", m.URL+"/", "--all-platforms", "--parallel", "1", "multi")
	if err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("multi: %d blobs", len(imgs.ManifestList.Blobs())); !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
	hub.ResetCounters()
	pullImage(t, m.Host+"/multi:latest", amd64)
	pullImage(t, m.Host+"/multi:latest", arm64)
	if n := hubBlobGets(hub); n != 0 {
		t.Errorf("pulls after warm made %d blob GETs upstream, want 0", n)
	}
}

// TestWarmPrefixedUpstream warms an image of a second upstream through the
// mirror's path prefix.
func TestWarmPrefixedUpstream(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	ghcr := testenv.NewHub(t)
	ghcr.Seed(t, testenv.WithPrefix("owner/"), testenv.WithTag("1"))
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := fmt.Sprintf("upstreams:\n  - name: docker.io\n    url: %s\n  - name: ghcr.io\n    url: %s\n", hub.URL, ghcr.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	m := apptest.Start(t, map[string]string{"REGCACHE_CONFIG": cfg})
	out, err := runCLI(t, "warm", "--mirror", m.URL, "ghcr.io/owner/single:1")
	if err != nil {
		t.Fatalf("warm: %v\n%s", err, out)
	}
	ghcr.ResetCounters()
	pullImage(t, m.Host+"/ghcr.io/owner/single:1", amd64)
	if n := hubBlobGets(ghcr); n != 0 {
		t.Errorf("pull after warm made %d blob GETs upstream, want 0", n)
	}
	if n := hub.Count("", testenv.KindManifest); n != 0 {
		t.Errorf("the Docker Hub upstream was asked %d times for a ghcr.io image", n)
	}

	_, err = runCLI(t, "warm", "--mirror", m.URL, "quay.io/owner/single:1")
	if err == nil || !strings.Contains(err.Error(), "quay.io/owner/single:1") || !strings.Contains(err.Error(), "NAME_UNKNOWN") ||
		!strings.Contains(err.Error(), `registry "quay.io" is not configured`) {
		t.Errorf("unconfigured registry: %v", err)
	}
}

func TestWarmErrors(t *testing.T) {
	t.Parallel()
	hub, _, m := hubMirror(t, nil)
	tests := []struct {
		name string
		args []string
		want []string
		out  string // in the progress output
	}{
		{"bad name", []string{"Alpine:3.20"}, []string{`invalid image "Alpine:3.20"`, "lower-case"}, ""},
		{"bad tag", []string{"alpine:-x"}, []string{`invalid image "alpine:-x"`, "bad tag"}, ""},
		{"missing tag", []string{"single", "single:nope"},
			[]string{"warm failed for 1 of 2 images", "single:nope: manifest nope: mirror answered 404", "MANIFEST_UNKNOWN", "no such tag"},
			"warmed 1 of 2 images"},
		{"missing repository", []string{"nosuchrepo:1"}, []string{"nosuchrepo:1", "mirror answered 404"}, "warmed 0 of 1 images"},
		{"missing platform", []string{"--platform", "linux/s390x", "multi"},
			[]string{"multi: the index has no manifest for linux/s390x (it has linux/amd64, linux/arm64)", "--all-platforms"}, ""},
		{"bad platform", []string{"--platform", "amd64", "multi"}, []string{`--platform "amd64": want os/arch`}, ""},
		{"no image", nil, []string{"name at least one image"}, ""},
		{"mirror down", []string{"--mirror", "http://127.0.0.1:1", "single"}, []string{"reach the mirror at http://127.0.0.1:1", "is regcache serve running"}, ""},
		{"bad mirror", []string{"--mirror", "ftp://127.0.0.1:5000", "single"}, []string{`--mirror "ftp://127.0.0.1:5000"`, "http:// or https://", "host:port"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"warm", "--mirror", m.URL}, tc.args...)
			out, err := runCLI(t, args...)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if !strings.Contains(out, tc.out) {
				t.Errorf("output lacks %q:\n%s", tc.out, out)
			}
		})
	}
	for _, r := range hub.Requests() {
		if r.Ref == "3.20" || r.Ref == "-x" || strings.Contains(r.Path, "s390x") {
			t.Errorf("an invalid request reached the upstream: %s %s", r.Method, r.Path)
		}
	}
}

// TestWarmLogin warms a private image through a mirror with client logins.
func TestWarmLogin(t *testing.T) {
	t.Parallel()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("ci:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := testenv.NewHub(t)
	hub.Seed(t)
	hub.SetCredentials("mirror", "hubpass")
	hub.SetPrivate("library/single", true)
	m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": "mirror", "REGCACHE_PASSWORD": "hubpass",
		"REGCACHE_HTPASSWD": htpasswd, "REGCACHE_PRIVATE": "authenticated"})

	_, err = runCLI(t, "warm", "--mirror", m.URL, "single")
	if err == nil || !strings.Contains(err.Error(), "single:") {
		t.Fatalf("anonymous warm of a private image: %v", err)
	}
	t.Logf("anonymous: %v", err)
	_, err = runCLI(t, "warm", "--mirror", m.URL, "--username", "ci", "--password", "wrong", "single")
	if err == nil || !strings.Contains(err.Error(), "--password") {
		t.Fatalf("wrong password: %v", err)
	}
	t.Logf("wrong password: %v", err)
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader("s3cret\n"))
	root.SetArgs([]string{"warm", "--mirror", m.URL, "--username", "ci", "--password-stdin", "single"})
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("warm with a login: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String()+m.Log(), "s3cret") {
		t.Error("the password was printed or logged")
	}
}

func TestParseImage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, name, ref, registry string
	}{
		{"alpine", "alpine", "latest", ""},
		{"alpine:3.20", "alpine", "3.20", ""},
		{"library/alpine:3.20", "library/alpine", "3.20", ""},
		{"ghcr.io/owner/app:1", "ghcr.io/owner/app", "1", "ghcr.io"},
		{"localhost/app", "localhost/app", "latest", "localhost"},
		{"registry.example:5000/team/app", "registry.example:5000/team/app", "latest", "registry.example:5000"},
		{"alpine:3.20@sha256:" + strings.Repeat("a", 64), "alpine", "sha256:" + strings.Repeat("a", 64), ""},
	}
	for _, tc := range tests {
		r, err := oci.ParseImage(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if r.MirrorName() != tc.name || r.Reference().String() != tc.ref || r.Registry != tc.registry {
			t.Errorf("%s: name %q ref %q registry %q, want %q %q %q", tc.in, r.MirrorName(), r.Reference(), r.Registry, tc.name, tc.ref, tc.registry)
		}
	}
	for _, bad := range []string{"", "Alpine", "alpine@sha256:abc", "a//b", "alpine:", "ghcr.io/", "-x"} {
		if _, err := oci.ParseImage(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestPlatformMatches(t *testing.T) {
	t.Parallel()
	p := func(s string) platform { pl, _ := parsePlatform(s); return pl }
	tests := []struct {
		want     string
		os, arch string
		variant  string
		ok       bool
	}{
		{"linux/amd64", "linux", "amd64", "", true},
		{"linux/arm64", "linux", "arm64", "v8", true},
		{"linux/arm64/v8", "linux", "arm64", "", true},
		{"linux/arm/v7", "linux", "arm", "v6", false},
		{"linux/arm", "linux", "arm", "v6", true},
		{"linux/amd64", "windows", "amd64", "", false},
	}
	for _, tc := range tests {
		if got := p(tc.want).matches(&ocispec.Platform{OS: tc.os, Architecture: tc.arch, Variant: tc.variant}); got != tc.ok {
			t.Errorf("%s vs %s/%s/%s: %v", tc.want, tc.os, tc.arch, tc.variant, got)
		}
	}
}

// TestWarmHelpHidesPassword: --help prints flag defaults; the password from
// the environment must not be one.
func TestWarmHelpHidesPassword(t *testing.T) {
	t.Setenv("REGCACHE_WARM_PASSWORD", "s3cret-from-env")
	var out bytes.Buffer
	root := NewRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"warm", "--help"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "s3cret-from-env") {
		t.Fatal("warm --help printed the password from REGCACHE_WARM_PASSWORD")
	}
}
