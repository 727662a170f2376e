package oci

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

// IsIndex reports whether mediaType is a manifest list or an image index.
func IsIndex(mediaType string) bool {
	return mediaType == MediaTypeOCIIndex || mediaType == MediaTypeDockerManifestList
}

// MaxManifestSize is the largest manifest regcache reads (the spec's
// recommended minimum that registries must accept is 4 MiB).
const MaxManifestSize = 4 << 20
