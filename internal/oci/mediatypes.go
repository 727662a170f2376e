package oci

import "encoding/json"

// Manifest media types regcache asks upstreams for. Manifests are stored and
// served byte for byte whatever their type; these only shape Accept.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOCIManifest        = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex           = "application/vnd.oci.image.index.v1+json"
	// Docker's schema 1, still served by old registries (never asked for).
	MediaTypeDockerSchema1       = "application/vnd.docker.distribution.manifest.v1+json"
	MediaTypeDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
)

// IsManifestMediaType reports whether mediaType is one the OCI image spec
// or Docker defines for manifests: the only types a manifest is served
// with.
func IsManifestMediaType(mediaType string) bool {
	switch mediaType {
	case MediaTypeDockerManifest, MediaTypeDockerManifestList, MediaTypeOCIManifest, MediaTypeOCIIndex,
		MediaTypeDockerSchema1, MediaTypeDockerSchema1Signed:
		return true
	}
	return false
}

// ManifestMediaTypes are the types every upstream manifest request accepts,
// in addition to whatever the client sent. A mirror must not let one client's
// narrow Accept decide what every later client gets for a tag (an old client
// asking only for schema 2 would otherwise pin a multi-arch tag to one
// platform).
var ManifestMediaTypes = []string{
	MediaTypeOCIIndex,
	MediaTypeDockerManifestList,
	MediaTypeOCIManifest,
	MediaTypeDockerManifest,
}

// SniffManifest reports the manifest media type of a body: its own
// mediaType field when that is a manifest type, else what its shape says
// (schema 2 with manifests: an index; with a config: an image manifest;
// schema 1 with fsLayers: Docker's schema 1). ok is false for anything
// else, a JSON body that is no manifest included.
func SniffManifest(body []byte) (mediaType string, ok bool) {
	var shape struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Config        json.RawMessage `json:"config"`
		Manifests     json.RawMessage `json:"manifests"`
		FSLayers      json.RawMessage `json:"fsLayers"`
	}
	if json.Unmarshal(body, &shape) != nil {
		return "", false
	}
	switch {
	case IsManifestMediaType(shape.MediaType):
		return shape.MediaType, true
	case shape.MediaType != "":
	case shape.SchemaVersion == 2 && shape.Manifests != nil:
		return MediaTypeOCIIndex, true
	case shape.SchemaVersion == 2 && shape.Config != nil:
		return MediaTypeOCIManifest, true
	case shape.SchemaVersion == 1 && shape.FSLayers != nil:
		return MediaTypeDockerSchema1Signed, true
	}
	return "", false
}

// IsIndex reports whether mediaType is a manifest list or an image index.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerManifestList
}

// MaxManifestSize is the largest manifest regcache reads (the spec's
// recommended minimum that registries must accept is 4 MiB).
const MaxManifestSize = 4 << 20
