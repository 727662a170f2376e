package testenv

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func newGGCRRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestSeedDeterministic(t *testing.T) {
	t.Parallel()
	a := Seed(t, newGGCRRegistry(t), nil, WithSeed(7), WithTenLayerImage(10*4096))
	b := Seed(t, newGGCRRegistry(t), nil, WithSeed(7), WithTenLayerImage(10*4096))
	c := Seed(t, newGGCRRegistry(t), nil, WithSeed(8))
	if a.Single.Digest != b.Single.Digest || a.ManifestList.Digest != b.ManifestList.Digest ||
		a.OCIIndex.Digest != b.OCIIndex.Digest || a.TenLayer.Digest != b.TenLayer.Digest {
		t.Errorf("same seed gave different digests:\n%+v\n%+v", a, b)
	}
	if a.Single.Digest == c.Single.Digest {
		t.Errorf("different seeds gave the same digest %s", a.Single.Digest)
	}
	if a.Big != nil || c.TenLayer != nil {
		t.Errorf("optional images pushed without being asked for")
	}
	if got := len(a.TenLayer.Layers); got != 10 {
		t.Errorf("TenLayer has %d layers, want 10", got)
	}
}

func TestSeedContent(t *testing.T) {
	t.Parallel()
	host := newGGCRRegistry(t)
	imgs := Seed(t, host, nil, WithPrefix("seedtest/"), WithTag("v1"))

	tests := []struct {
		name      string
		img       Image
		mediaType types.MediaType
		children  int
		childType types.MediaType
	}{
		{"single", imgs.Single, types.DockerManifestSchema2, 0, ""},
		{"manifest list", imgs.ManifestList, types.DockerManifestList, 2, types.DockerManifestSchema2},
		{"oci index", imgs.OCIIndex, types.OCIImageIndex, 2, types.OCIManifestSchema1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.HasPrefix(tt.img.Repo, "seedtest/") || tt.img.Tag != "v1" {
				t.Errorf("repo %q tag %q", tt.img.Repo, tt.img.Tag)
			}
			ref, err := name.ParseReference(tt.img.Ref, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			desc, err := remote.Get(ref, remote.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("get %s: %v", ref, err)
			}
			if desc.Digest.String() != string(tt.img.Digest) || desc.MediaType != tt.mediaType {
				t.Errorf("registry has %s %s, Seed reported %s %s", desc.Digest, desc.MediaType, tt.img.Digest, tt.img.MediaType)
			}
			if string(desc.Manifest) != string(tt.img.Manifest) {
				t.Errorf("manifest bytes differ from what Seed reported")
			}
			if len(tt.img.Platforms) != tt.children {
				t.Fatalf("%d platforms, want %d", len(tt.img.Platforms), tt.children)
			}
			for _, child := range tt.img.Platforms {
				if child.MediaType != string(tt.childType) {
					t.Errorf("child %s media type %s, want %s", child.Platform, child.MediaType, tt.childType)
				}
			}
			for _, b := range tt.img.Blobs() {
				h, _ := v1.NewHash(string(b.Digest))
				l, err := remote.Layer(ref.Context().Digest(h.String()), remote.WithContext(t.Context()))
				if err != nil {
					t.Fatal(err)
				}
				if size, err := l.Size(); err != nil || size != b.Size {
					t.Errorf("blob %s size %d (%v), want %d", b.Digest, size, err, b.Size)
				}
			}
		})
	}
}

func TestNewLayer(t *testing.T) {
	t.Parallel()
	const size = 3<<20 + 17
	l, err := NewLayer(42, size, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatal(err)
	}
	dgst, _ := l.Digest()
	wantSize, _ := l.Size()
	if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != dgst.String() || n != wantSize {
		t.Errorf("compressed stream %s (%d bytes), layer says %s (%d bytes)", got, n, dgst, wantSize)
	}

	// The layer must be a real gzip tar, so engines can unpack it.
	rc2, _ := l.Compressed()
	defer rc2.Close()
	zr, err := gzip.NewReader(rc2)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Size != size || fs.FileMode(hdr.Mode).Perm() != 0o644 {
		t.Errorf("tar entry %s size %d mode %o", hdr.Name, hdr.Size, hdr.Mode)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("want one tar entry, next = %v", err)
	}

	// Closing early must not leak the generator goroutine (goleak checks).
	rc3, _ := l.Uncompressed()
	io.CopyN(io.Discard, rc3, 100)
	rc3.Close()
}

func TestSeedBigImage(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 101 MiB")
	}
	t.Parallel()
	h := NewHub(t)
	h.SetAuth(false)
	imgs := h.Seed(t, WithBigImage(0))
	layer := imgs.Big.Layers[0]
	if layer.Size <= 100<<20 {
		t.Errorf("big layer is %d bytes, want over 100 MiB", layer.Size)
	}
	resp, err := http.Get(h.CDNURL + "/blobs/" + string(layer.Digest))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	if err != nil || n != layer.Size || fmt.Sprintf("sha256:%x", sum.Sum(nil)) != string(layer.Digest) {
		t.Errorf("fetched %d bytes (%v), digest mismatch or short", n, err)
	}
}
