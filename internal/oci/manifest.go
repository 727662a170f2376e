package oci

import (
	"encoding/json"
	"strings"

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
