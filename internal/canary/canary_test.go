package canary

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestValidTag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tag  string
		want bool
	}{
		{"fresh", "v-0123456789abcdef", true},
		{"upper hex", "v-0123456789ABCDEF", false},
		{"short", "v-0123456789abcde", false},
		{"long", "v-0123456789abcdef0", false},
		{"no prefix", "x-0123456789abcdef", false},
		{"latest", "latest", false},
		{"not hex", "v-0123456789abcdeg", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := ValidTag(tt.tag); got != tt.want {
				t.Errorf("ValidTag(%q) = %v, want %v", tt.tag, got, tt.want)
			}
		})
	}
}

// TestImageChecks walks the canary as an engine does: the index by tag,
// every platform's manifest by digest, its config and layer as blobs; every
// body hashes to its digest and size, the layer's diff_id is its tar's.
func TestImageChecks(t *testing.T) {
	t.Parallel()
	idx, ok := Manifest("v-0123456789abcdef", "")
	if !ok {
		t.Fatal("no index for a canary tag")
	}
	if _, ok := Manifest("latest", ""); ok {
		t.Error("a tag outside the pattern got the canary")
	}
	if again, _ := Manifest("v-fedcba9876543210", ""); again.Digest != idx.Digest {
		t.Error("two tags name different content; any replica must answer any digest")
	}
	if byDigest, ok := Manifest("", idx.Digest); !ok || !bytes.Equal(byDigest.Body, idx.Body) {
		t.Error("the index is not served by its digest")
	}
	checkContent(t, idx, v1.Descriptor{MediaType: v1.MediaTypeImageIndex, Digest: idx.Digest, Size: int64(len(idx.Body))})
	var index v1.Index
	if err := json.Unmarshal(idx.Body, &index); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range index.Manifests {
		if d.Platform == nil {
			t.Fatalf("index entry %s has no platform", d.Digest)
		}
		seen[d.Platform.Architecture+d.Platform.Variant] = true
		m, ok := Manifest("", d.Digest)
		if !ok {
			t.Fatalf("manifest %s is not served", d.Digest)
		}
		checkContent(t, m, d)
		if _, ok := Blob(d.Digest); ok {
			t.Errorf("manifest %s served as a blob", d.Digest)
		}
		var man v1.Manifest
		if err := json.Unmarshal(m.Body, &man); err != nil {
			t.Fatal(err)
		}
		cfg, ok := Blob(man.Config.Digest)
		if !ok {
			t.Fatalf("config %s is not served", man.Config.Digest)
		}
		checkContent(t, cfg, man.Config)
		var img v1.Image
		if err := json.Unmarshal(cfg.Body, &img); err != nil {
			t.Fatal(err)
		}
		if img.Architecture != d.Platform.Architecture || img.Variant != d.Platform.Variant || img.OS != "linux" {
			t.Errorf("config of %s/%s says %s/%s", d.Platform.Architecture, d.Platform.Variant, img.Architecture, img.Variant)
		}
		if len(man.Layers) != 1 || len(img.RootFS.DiffIDs) != 1 {
			t.Fatalf("want one layer, got %d (diff_ids %d)", len(man.Layers), len(img.RootFS.DiffIDs))
		}
		lay, ok := Blob(man.Layers[0].Digest)
		if !ok {
			t.Fatal("layer is not served")
		}
		checkContent(t, lay, man.Layers[0])
		zr, err := gzip.NewReader(bytes.NewReader(lay.Body))
		if err != nil {
			t.Fatal(err)
		}
		tarball, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(tarball); got != img.RootFS.DiffIDs[0] {
			t.Errorf("diff_id %s, the layer's tar is %s", img.RootFS.DiffIDs[0], got)
		}
		hdr, err := tar.NewReader(bytes.NewReader(tarball)).Next()
		if err != nil || hdr.Name != "regcache-canary.txt" {
			t.Errorf("layer's file: %v %v", hdr, err)
		}
	}
	for _, want := range []string{"amd64", "arm64v8", "armv7"} {
		if !seen[want] {
			t.Errorf("the index lists no %s image", want)
		}
	}
	if _, ok := Blob(digest.FromString("something else")); ok {
		t.Error("an unknown digest was answered")
	}
	if _, ok := Manifest("", digest.FromString("something else")); ok {
		t.Error("an unknown manifest digest was answered")
	}
}

func checkContent(t *testing.T, c Content, d v1.Descriptor) {
	t.Helper()
	if c.MediaType != d.MediaType || c.Digest != d.Digest || int64(len(c.Body)) != d.Size || digest.FromBytes(c.Body) != d.Digest {
		t.Errorf("content %s (%s, %d bytes) does not match its descriptor %+v", c.Digest, c.MediaType, len(c.Body), d)
	}
}

// TestBuildIsDeterministic: the same bytes every time, so replicas agree.
func TestBuildIsDeterministic(t *testing.T) {
	t.Parallel()
	a, b := build(), build()
	if a.index.Digest != b.index.Digest || len(a.byDigest) != len(b.byDigest) {
		t.Fatal("two builds differ")
	}
	for d := range a.byDigest {
		if _, ok := b.byDigest[d]; !ok {
			t.Errorf("%s only in one build", d)
		}
	}
}
