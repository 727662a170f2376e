package testenv

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// DefaultBigLayerSize is the layer size of the big image when WithBigImage
// is given 0: just over 100 MiB, past the sizes where naive buffering and
// client stall timeouts start to show.
const DefaultBigLayerSize = 101 << 20

// Blob describes one pushed blob.
type Blob struct {
	Digest    digest.Digest
	Size      int64
	MediaType string
}

// Image describes one pushed manifest: an image, or an index with its
// platform images in Platforms.
type Image struct {
	Repo      string        // repository, e.g. "library/single"
	Tag       string        // tag it was pushed under; empty for index children
	Ref       string        // host/repo:tag, or host/repo@digest for index children
	Digest    digest.Digest // manifest digest
	MediaType string        // manifest media type
	Manifest  []byte        // raw manifest bytes as pushed
	Platform  string        // "os/arch[/variant]" for index children
	Config    Blob          // zero for an index
	Layers    []Blob        // in manifest order; empty for an index
	Platforms []Image       // index children in index order
}

// ByDigest returns host/repo@digest for the image.
func (i Image) ByDigest(host string) string { return host + "/" + i.Repo + "@" + string(i.Digest) }

// Blobs returns the config and layers of the image, or of every platform
// image for an index.
func (i Image) Blobs() []Blob {
	var out []Blob
	if i.Config.Digest != "" {
		out = append(out, i.Config)
	}
	out = append(out, i.Layers...)
	for _, p := range i.Platforms {
		out = append(out, p.Blobs()...)
	}
	return out
}

// Images is what Seed pushed. Big and TenLayer are nil unless asked for.
type Images struct {
	Single       Image  // Docker schema 2 image, one platform (linux/amd64)
	ManifestList Image  // Docker manifest list: linux/amd64 and linux/arm64
	OCIIndex     Image  // OCI image index: linux/amd64 and linux/arm64/v8
	Big          *Image // one layer of WithBigImage's size
	TenLayer     *Image // ten layers of WithTenLayerImage's total size
}

// SeedOption configures Seed.
type SeedOption func(*seedConfig)

type seedConfig struct {
	seed     uint64
	prefix   string
	tag      string
	bigSize  int64
	tenTotal int64
}

// WithSeed sets the seed all content is derived from (default 1). The same
// seed gives the same digests.
func WithSeed(seed uint64) SeedOption { return func(c *seedConfig) { c.seed = seed } }

// WithPrefix sets the repository prefix (default "library/", so the images
// are reachable as one-segment Docker Hub names like "single").
func WithPrefix(prefix string) SeedOption { return func(c *seedConfig) { c.prefix = prefix } }

// WithTag sets the tag every image is pushed under (default "latest").
func WithTag(tag string) SeedOption { return func(c *seedConfig) { c.tag = tag } }

// WithBigImage also pushes <prefix>big, an image with one layer of size
// bytes (DefaultBigLayerSize when 0). The layer is generated as a stream,
// never held in memory.
func WithBigImage(size int64) SeedOption {
	return func(c *seedConfig) {
		if size <= 0 {
			size = DefaultBigLayerSize
		}
		c.bigSize = size
	}
}

// WithTenLayerImage also pushes <prefix>layers, an image of ten layers
// whose contents add up to about total bytes.
func WithTenLayerImage(total int64) SeedOption { return func(c *seedConfig) { c.tenTotal = total } }

// Seed pushes deterministic test images to registryHost (host:port, plain
// HTTP) with auth (nil means anonymous): <prefix>single, <prefix>multi (a
// Docker manifest list), <prefix>oci (an OCI index) and, when asked,
// <prefix>big and <prefix>layers. Every layer is a valid gzip tar, so real
// engines can unpack it.
func Seed(t testing.TB, registryHost string, auth authn.Authenticator, opts ...SeedOption) Images {
	t.Helper()
	cfg := seedConfig{seed: 1, prefix: "library/", tag: "latest"}
	for _, o := range opts {
		o(&cfg)
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	s := &seeder{t: t, host: registryHost, cfg: cfg,
		ropts: []remote.Option{remote.WithAuth(auth), remote.WithContext(t.Context())}}

	amd64 := v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 := v1.Platform{OS: "linux", Architecture: "arm64"}
	arm64v8 := v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	var imgs Images
	imgs.Single = s.pushImage("single", s.image(10, false, amd64, 2048, 4096))
	imgs.ManifestList = s.pushIndex("multi", types.DockerManifestList, []v1.Image{
		s.image(20, false, amd64, 3000, 1500),
		s.image(30, false, arm64, 2500, 1200),
	}, []v1.Platform{amd64, arm64})
	imgs.OCIIndex = s.pushIndex("oci", types.OCIImageIndex, []v1.Image{
		s.image(40, true, amd64, 3500),
		s.image(50, true, arm64v8, 2200),
	}, []v1.Platform{amd64, arm64v8})
	if cfg.bigSize > 0 {
		big := s.pushImage("big", s.image(60, false, amd64, cfg.bigSize))
		imgs.Big = &big
	}
	if cfg.tenTotal > 0 {
		sizes := make([]int64, 10)
		for i := range sizes {
			sizes[i] = max(cfg.tenTotal/10, 1)
		}
		ten := s.pushImage("layers", s.image(70, false, amd64, sizes...))
		imgs.TenLayer = &ten
	}
	return imgs
}

type seeder struct {
	t     testing.TB
	host  string
	cfg   seedConfig
	ropts []remote.Option
}

// image builds an image whose layers have the given content sizes; salt
// keeps the images of one Seed call distinct from each other.
func (s *seeder) image(salt uint64, oci bool, p v1.Platform, sizes ...int64) v1.Image {
	s.t.Helper()
	mt, cmt, lmt := types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	if oci {
		mt, cmt, lmt = types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, mt), cmt)
	img, err := mutate.ConfigFile(img, &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		Created:      v1.Time{Time: time.Unix(0, 0).UTC()},
		RootFS:       v1.RootFS{Type: "layers"},
		Config: v1.Config{
			Cmd:    []string{"/data"},
			Labels: map[string]string{"org.regcache.testenv.seed": fmt.Sprint(s.cfg.seed, "-", salt)},
		},
	})
	if err != nil {
		s.t.Fatalf("seed image config: %v", err)
	}
	for i, size := range sizes {
		l, err := NewLayer(s.cfg.seed*1000+salt*10+uint64(i), size, lmt)
		if err != nil {
			s.t.Fatalf("seed layer: %v", err)
		}
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: lmt, History: v1.History{
			Created:   v1.Time{Time: time.Unix(0, 0).UTC()},
			CreatedBy: fmt.Sprintf("regcache testenv layer %d", i),
		}})
		if err != nil {
			s.t.Fatalf("seed append layer: %v", err)
		}
	}
	return img
}

func (s *seeder) ref(repo string) name.Reference {
	s.t.Helper()
	ref, err := name.NewTag(s.host+"/"+s.cfg.prefix+repo+":"+s.cfg.tag, name.Insecure)
	if err != nil {
		s.t.Fatalf("seed reference: %v", err)
	}
	return ref
}

func (s *seeder) pushImage(repo string, img v1.Image) Image {
	s.t.Helper()
	ref := s.ref(repo)
	if err := remote.Write(ref, img, s.ropts...); err != nil {
		s.t.Fatalf("seed push %s: %v", ref, err)
	}
	out := describeImage(s.t, img)
	out.Repo, out.Tag, out.Ref = s.cfg.prefix+repo, s.cfg.tag, ref.String()
	return out
}

func (s *seeder) pushIndex(repo string, mt types.MediaType, imgs []v1.Image, plats []v1.Platform) Image {
	s.t.Helper()
	idx := mutate.IndexMediaType(empty.Index, mt)
	for i, img := range imgs {
		p := plats[i]
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	ref := s.ref(repo)
	if err := remote.WriteIndex(ref, idx, s.ropts...); err != nil {
		s.t.Fatalf("seed push %s: %v", ref, err)
	}
	raw, err := idx.RawManifest()
	if err != nil {
		s.t.Fatalf("seed index manifest: %v", err)
	}
	out := Image{Repo: s.cfg.prefix + repo, Tag: s.cfg.tag, Ref: ref.String(), MediaType: string(mt),
		Manifest: raw, Digest: digest.FromBytes(raw)}
	for i, img := range imgs {
		child := describeImage(s.t, img)
		child.Repo = out.Repo
		child.Ref = child.ByDigest(s.host)
		child.Platform = plats[i].String()
		out.Platforms = append(out.Platforms, child)
	}
	return out
}

func describeImage(t testing.TB, img v1.Image) Image {
	t.Helper()
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatalf("seed manifest: %v", err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatalf("seed manifest: %v", err)
	}
	out := Image{Manifest: raw, Digest: digest.FromBytes(raw), MediaType: string(m.MediaType),
		Config: Blob{Digest: digest.Digest(m.Config.Digest.String()), Size: m.Config.Size, MediaType: string(m.Config.MediaType)}}
	for _, l := range m.Layers {
		out.Layers = append(out.Layers, Blob{Digest: digest.Digest(l.Digest.String()), Size: l.Size, MediaType: string(l.MediaType)})
	}
	return out
}

// NewLayer returns a layer that is a gzip tar holding one file of size
// pseudo-random bytes derived from seed. Its digests are computed once by
// streaming; its contents are regenerated on every read, so a layer of any
// size costs no memory. The gzip stream uses stored blocks (random data
// does not compress), which keeps generation fast.
func NewLayer(seed uint64, size int64, mt types.MediaType) (v1.Layer, error) {
	l := &genLayer{seed: seed, size: size, mt: mt}
	diffID, compressed := sha256.New(), sha256.New()
	counter := &countWriter{w: compressed}
	if err := l.writeCompressed(counter, diffID); err != nil {
		return nil, err
	}
	l.diffID = hashOf(diffID)
	l.digest = hashOf(compressed)
	l.compressedSize = counter.n
	return l, nil
}

type genLayer struct {
	seed           uint64
	size           int64
	mt             types.MediaType
	digest, diffID v1.Hash
	compressedSize int64
}

var _ v1.Layer = (*genLayer)(nil)

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

func (l *genLayer) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     fmt.Sprintf("data-%d.bin", l.seed),
		Mode:     0o644,
		Size:     l.size,
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], l.seed)
	if _, err := io.CopyN(tw, rand.NewChaCha8(key), l.size); err != nil {
		return err
	}
	return tw.Close()
}

// writeCompressed writes the gzip stream to w and, when tee is not nil, the
// uncompressed tar to tee.
func (l *genLayer) writeCompressed(w io.Writer, tee io.Writer) error {
	zw, err := gzip.NewWriterLevel(w, gzip.NoCompression)
	if err != nil {
		return err
	}
	var dst io.Writer = zw
	if tee != nil {
		dst = io.MultiWriter(zw, tee)
	}
	if err := l.writeTar(dst); err != nil {
		return err
	}
	return zw.Close()
}

func (l *genLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *genLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *genLayer) Size() (int64, error)                { return l.compressedSize, nil }
func (l *genLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func (l *genLayer) Compressed() (io.ReadCloser, error) {
	return pipe(func(w io.Writer) error { return l.writeCompressed(w, nil) }), nil
}

func (l *genLayer) Uncompressed() (io.ReadCloser, error) {
	return pipe(l.writeTar), nil
}

// pipe runs produce in a goroutine that ends when the reader is closed.
func pipe(produce func(io.Writer) error) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(produce(pw)) }()
	return pr
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
