// Package canary is the image the mirror makes up itself so a node can
// prove that its engine pulls through the mirror: `regcache client ...
// status --verify` has the engine pull Repo at a fresh tag, then asks the
// mirror whether that tag arrived. The image never exists upstream and
// the mirror never asks an upstream for it.
//
// Every tag matching the pattern names the same content: an OCI index
// with one image manifest per common platform, each with its own config
// and the one tiny layer. The tag is the nonce, not the content, so any
// replica of a mirror answers any of the digests without remembering
// which tags it served, and every digest checks.
package canary

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Repo is the reserved repository of the default upstream (Docker Hub's
// root path) the canary is served under.
const Repo = "regcache/canary"

// tagPrefix and tagHex make the only tags the canary answers: v- and 16
// lowercase hex digits.
const (
	tagPrefix = "v-"
	tagHex    = 16
)

// ValidTag reports whether tag is a canary tag: "v-" and 16 lowercase hex
// digits.
func ValidTag(tag string) bool {
	if len(tag) != len(tagPrefix)+tagHex || tag[:len(tagPrefix)] != tagPrefix {
		return false
	}
	for _, c := range tag[len(tagPrefix):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Tag is the canary tag of 8 random bytes.
func Tag(nonce [8]byte) string { return fmt.Sprintf("%s%x", tagPrefix, nonce[:]) }

// Content is one piece of the canary: its bytes, media type and digest.
type Content struct {
	Body      []byte
	MediaType string
	Digest    digest.Digest
}

// platforms are those the index lists, so that every engine finds its own
// (containerd and podman refuse an image of another architecture).
var platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
	{OS: "linux", Architecture: "arm", Variant: "v6"},
	{OS: "linux", Architecture: "386"},
	{OS: "linux", Architecture: "ppc64le"},
	{OS: "linux", Architecture: "s390x"},
	{OS: "linux", Architecture: "riscv64"},
	{OS: "linux", Architecture: "mips64le"},
	{OS: "linux", Architecture: "loong64"},
}

// Readme is the one file of the canary's layer.
const Readme = "This image was made up by a regcache mirror to prove that a node pulls through it.\n" +
	"It exists at no registry. See docs/rollout.md of regcache.\n"

// image is the canary, built once.
type image struct {
	index Content
	// byDigest holds the manifests, configs and the layer.
	byDigest map[digest.Digest]Content
}

var built = sync.OnceValue(build)

// Manifest answers a manifest of the canary by tag or digest; ok is false
// for a tag that is not a canary tag and a digest that is not the
// canary's.
func Manifest(tag string, d digest.Digest) (Content, bool) {
	img := built()
	if d == "" {
		return img.index, ValidTag(tag)
	}
	if d == img.index.Digest {
		return img.index, true
	}
	c, ok := img.byDigest[d]
	if !ok || !isManifest(c.MediaType) {
		return Content{}, false
	}
	return c, true
}

// Blob answers a blob of the canary (a config or the layer); ok is false
// for any other digest.
func Blob(d digest.Digest) (Content, bool) {
	c, ok := built().byDigest[d]
	if !ok || isManifest(c.MediaType) {
		return Content{}, false
	}
	return c, true
}

func isManifest(mt string) bool {
	return mt == v1.MediaTypeImageManifest || mt == v1.MediaTypeImageIndex
}

func content(mt string, body []byte) Content {
	return Content{Body: body, MediaType: mt, Digest: digest.FromBytes(body)}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // fixed types of the image spec: cannot fail
	}
	return b
}

func build() image {
	tarball, gz := layer()
	lay := content(v1.MediaTypeImageLayerGzip, gz)
	img := image{byDigest: map[digest.Digest]Content{lay.Digest: lay}}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex,
		Annotations: map[string]string{"org.opencontainers.image.description": "regcache canary"}}
	for _, p := range platforms {
		cfg := content(v1.MediaTypeImageConfig, mustJSON(v1.Image{
			Platform: v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant},
			Config:   v1.ImageConfig{Labels: map[string]string{"org.opencontainers.image.description": "regcache canary"}},
			RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(tarball)}},
		}))
		man := content(v1.MediaTypeImageManifest, mustJSON(v1.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
			Config: descriptor(cfg), Layers: []v1.Descriptor{descriptor(lay)},
		}))
		img.byDigest[cfg.Digest], img.byDigest[man.Digest] = cfg, man
		d := descriptor(man)
		d.Platform = &p
		idx.Manifests = append(idx.Manifests, d)
	}
	img.index = content(v1.MediaTypeImageIndex, mustJSON(idx))
	return img
}

func descriptor(c Content) v1.Descriptor {
	return v1.Descriptor{MediaType: c.MediaType, Digest: c.Digest, Size: int64(len(c.Body))}
}

// layer is the layer's tar and its gzip, one file with fixed metadata.
func layer() (tarball, gz []byte) {
	var t bytes.Buffer
	tw := tar.NewWriter(&t)
	must(tw.WriteHeader(&tar.Header{Name: "regcache-canary.txt", Mode: 0o644, Size: int64(len(Readme)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}))
	_, err := tw.Write([]byte(Readme))
	must(err)
	must(tw.Close())
	var z bytes.Buffer
	zw, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
	must(err)
	_, err = zw.Write(t.Bytes())
	must(err)
	must(zw.Close())
	return t.Bytes(), z.Bytes()
}

func must(err error) {
	if err != nil {
		panic(err) // writes to memory with fixed inputs: cannot fail
	}
}
