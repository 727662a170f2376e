package oci

import (
	"encoding/json"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Content is what regcache reads of a manifest or an index, in the OCI
// image-spec's types (which Docker's schema 2 shares field for field).
// It is for reading only: manifests are stored and served as the upstream
// sent them, byte for byte.
type Content struct {
	v1.Manifest // config, layers, subject
	// Manifests are an index's (or manifest list's) entries.
	Manifests []v1.Descriptor `json:"manifests,omitempty"`
	// Blobs are the layers of the draft OCI artifact manifest (image-spec
	// 1.1 release candidates), still served by some registries.
	Blobs []v1.Descriptor `json:"blobs,omitempty"`
}

// DecodeContent reads a manifest or index body.
func DecodeContent(body []byte) (Content, error) {
	var c Content
	err := json.Unmarshal(body, &c)
	return c, err
}

// HasConfig reports whether the manifest names a config blob.
func (c Content) HasConfig() bool { return c.Config.Digest != "" }

// IsIndexOf reports whether c, served with mediaType, is an index or a
// manifest list: by the served type, its own mediaType field, or its shape.
func (c Content) IsIndexOf(mediaType string) bool {
	return IsIndex(mediaType) || IsIndex(c.MediaType) || (!c.HasConfig() && len(c.Manifests) > 0)
}

// IsForeign reports a layer registries do not hold (Windows base layers and
// other non-distributable content): it has URLs to fetch it from, or a
// foreign or non-distributable media type. Clients fetch it from its URLs;
// a mirror neither prefetches it nor counts it as held by a repository.
func IsForeign(d v1.Descriptor) bool {
	return len(d.URLs) > 0 || strings.Contains(d.MediaType, "foreign") || strings.Contains(d.MediaType, "nondistributable")
}

// References lists every digest a manifest or index body references: its
// config, its layers but the foreign ones (a foreign layer lives at its
// URLs; registries do not check that its digest exists, so naming one must
// not make a repository "hold" a cached blob of that digest), and an
// index's manifests. A body that does not decode references nothing.
func References(body []byte) []digest.Digest {
	mc, err := DecodeContent(body)
	if err != nil {
		return nil
	}
	var out []digest.Digest
	add := func(d v1.Descriptor) {
		if d.Digest.Validate() == nil && !slices.Contains(out, d.Digest) {
			out = append(out, d.Digest)
		}
	}
	add(mc.Config)
	for _, l := range mc.Layers {
		if !IsForeign(l) {
			add(l)
		}
	}
	for _, m := range mc.Manifests {
		add(m)
	}
	return out
}
