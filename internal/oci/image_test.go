package oci

import (
	"strings"
	"testing"

	"github.com/distribution/reference"
)

func TestParseImage(t *testing.T) {
	t.Parallel()
	dg := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		in, registry, repo, tag, digest, mirrorName string
	}{
		{"alpine", "", "alpine", "latest", "", "alpine"},
		{"library/alpine:3.20", "", "library/alpine", "3.20", "", "library/alpine"},
		{"myorg/app", "", "myorg/app", "latest", "", "myorg/app"},
		{"docker.io/alpine", DockerHub, "library/alpine", "latest", "", "docker.io/library/alpine"},
		{"index.docker.io/library/alpine:1", DockerHub, "library/alpine", "1", "", "docker.io/library/alpine"},
		{"registry-1.docker.io/myorg/app", DockerHub, "myorg/app", "latest", "", "docker.io/myorg/app"},
		{"GHCR.io/owner/app:1", "ghcr.io", "owner/app", "1", "", "ghcr.io/owner/app"},
		{"localhost/app", "localhost", "app", "latest", "", "localhost/app"},
		{"127.0.0.1:5000/team/app@" + dg, "127.0.0.1:5000", "team/app", "", dg, "127.0.0.1:5000/team/app"},
		{"alpine:3.20@" + dg, "", "alpine", "3.20", dg, "alpine"},
	}
	for _, tc := range tests {
		img, err := ParseImage(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if img.Registry != tc.registry || img.Repo != tc.repo || img.Tag != tc.tag || string(img.Digest) != tc.digest || img.MirrorName() != tc.mirrorName {
			t.Errorf("%s: %+v (mirror name %s), want registry %q repo %q tag %q digest %q mirror name %q",
				tc.in, img, img.MirrorName(), tc.registry, tc.repo, tc.tag, tc.digest, tc.mirrorName)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty name"},
		{"Alpine", "lower-case"},
		{"MyOrg/app", "lower-case"},
		{"alpine:-x", `bad tag "-x"`},
		{"alpine:", `bad tag ""`},
		{"alpine@sha256:abc", "bad digest"},
		{"a//b", "components are lower-case"},
		{"ghcr.io/", "components are lower-case"},
	}
	for _, tc := range bad {
		_, err := ParseImage(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "want e.g.") {
			t.Errorf("%q: %v, want an error with %q and examples", tc.in, err, tc.want)
		}
	}
}

// TestIsRegistryHostAgreesWithReference holds the router's allocation-free
// host rule to the reference grammar's.
func TestIsRegistryHostAgreesWithReference(t *testing.T) {
	t.Parallel()
	for _, first := range []string{"ghcr.io", "localhost", "localhost:5000", "127.0.0.1", "[::1]:5000", "registry:5000",
		"library", "myorg", "my-org", "a.b", "docker.io", "index.docker.io", "quay.io", "x_y", "local"} {
		named, err := reference.ParseNormalizedNamed(first + "/app")
		if err != nil {
			t.Errorf("%s/app: %v", first, err)
			continue
		}
		grammar := reference.Domain(named) != DockerHub || CanonicalRegistry(first) == DockerHub
		if got := IsRegistryHost(first); got != grammar {
			t.Errorf("IsRegistryHost(%q) = %v, the reference grammar says %v", first, got, grammar)
		}
	}
}

func FuzzIsRegistryHost(f *testing.F) {
	for _, s := range []string{"ghcr.io", "localhost", "library", "a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, first string) {
		named, err := reference.ParseNormalizedNamed(first + "/app")
		if err != nil || strings.ToLower(first) != first {
			return
		}
		grammar := reference.Domain(named) != DockerHub || CanonicalRegistry(first) == DockerHub
		if IsRegistryHost(first) != grammar {
			t.Errorf("IsRegistryHost(%q) = %v, the reference grammar says %v", first, !grammar, grammar)
		}
	})
}

func TestCanonicalRegistry(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"docker.io": DockerHub, "Index.Docker.io": DockerHub, "registry-1.docker.io": DockerHub, "GHCR.IO": "ghcr.io"} {
		if got := CanonicalRegistry(in); got != want {
			t.Errorf("CanonicalRegistry(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsForeign(t *testing.T) {
	t.Parallel()
	c, err := DecodeContent([]byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:` + strings.Repeat("b", 64) + `","size":2},
"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:` + strings.Repeat("c", 64) + `","size":3,"urls":["https://example/x"]},
{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip","digest":"sha256:` + strings.Repeat("d", 64) + `","size":4},
{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:` + strings.Repeat("e", 64) + `","size":5}]}`))
	if err != nil {
		t.Fatal(err)
	}
	var foreign []bool
	for _, l := range c.Layers {
		foreign = append(foreign, IsForeign(l))
	}
	if !c.HasConfig() || c.IsIndexOf("") || len(foreign) != 3 || !foreign[0] || !foreign[1] || foreign[2] {
		t.Errorf("config %v index %v foreign %v", c.HasConfig(), c.IsIndexOf(""), foreign)
	}
}
