package fleet

import "strings"

// Engine is the client software a request came from, read from its
// User-Agent: Name from a closed set, Version as the client gave it.
type Engine struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Engine names. Other is any User-Agent not recognised.
const (
	Dockerd    = "dockerd"
	Containerd = "containerd"
	// ContainersImage is github.com/containers/image without a name of its
	// own: podman and buildah send "containers/<library version>".
	ContainersImage = "containers/image"
	Podman          = "podman"
	Buildah         = "buildah"
	CRIO            = "cri-o"
	Skopeo          = "skopeo"
	Crane           = "crane"
	Regcache        = "regcache"
	Other           = "other"
)

// maxVersion bounds a version as kept: it comes from the client.
const maxVersion = 40

// names maps a User-Agent's first product name to its engine.
var names = map[string]string{
	"docker":     Dockerd, // dockerd: "docker/24.0.7 go/go1.21 git-commit/… kernel/… os/linux arch/amd64 UpstreamClient(…)"
	"containerd": Containerd,
	"containers": ContainersImage, // "containers/5.23.1 (github.com/containers/image)"
	"libpod":     Podman,
	"podman":     Podman,
	"buildah":    Buildah,
	"cri-o":      CRIO, // "cri-o/1.28.1 go/go1.20 os/linux arch/amd64"
	"skopeo":     Skopeo,
	"crane":      Crane, // "crane/v0.19.0 go-containerregistry/v0.19.0"
	"regcache":   Regcache,
}

// ParseUserAgent reads the engine from a User-Agent: its first product
// token (name/version) names it. Anything unknown is Other, without a
// version, so a client cannot fill the table with names of its making.
func ParseUserAgent(ua string) Engine {
	first, _, _ := strings.Cut(strings.TrimSpace(ua), " ")
	name, version, _ := strings.Cut(first, "/")
	engine, ok := names[strings.ToLower(name)]
	if !ok {
		return Engine{Name: Other}
	}
	version = strings.TrimPrefix(version, "v")
	if len(version) > maxVersion {
		version = version[:maxVersion]
	}
	for _, c := range version {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune(".-+~_", c)) {
			return Engine{Name: engine} // not a version: keep the name only
		}
	}
	return Engine{Name: engine, Version: version}
}
