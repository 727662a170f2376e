package oci

import (
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// DockerHub is Docker Hub's registry name, as clients know it.
const DockerHub = "docker.io"

// dockerHubAliases are the other host names of Docker Hub: its API host and
// the legacy index. This is the one list of them.
var dockerHubAliases = []string{"registry-1.docker.io", "index.docker.io"}

// CanonicalRegistry is a registry host in lower case, with Docker Hub's
// aliases folded into DockerHub.
func CanonicalRegistry(host string) string {
	host = strings.ToLower(host)
	for _, a := range dockerHubAliases {
		if host == a {
			return DockerHub
		}
	}
	return host
}

// IsRegistryHost reports whether the first component of a (lower-case)
// image name is a registry host rather than a path component: it has a dot
// or a port, or is localhost. This is the docker reference grammar's rule
// (github.com/distribution/reference, splitDockerDomain), which
// TestIsRegistryHostAgreesWithReference holds it to; it is written out here
// because the router runs it on every request, without a regexp.
func IsRegistryHost(component string) bool {
	return strings.ContainsAny(component, ".:") || component == "localhost"
}

// HubRepository is the repository name at the upstream called registry:
// Docker Hub's official images live under library/, which clients leave out
// ("alpine" is "library/alpine").
func HubRepository(registry, name string) string {
	if registry == DockerHub && !strings.Contains(name, "/") {
		return "library/" + name
	}
	return name
}

// Image is an image as a user names it to docker pull:
// [registry/]name[:tag][@digest].
type Image struct {
	// Raw is the name as given.
	Raw string
	// Registry is the registry the name starts with, canonical (lower
	// case, Docker Hub's aliases as docker.io); "" when it names none.
	Registry string
	// Repo is the repository: as written when no registry is named
	// (alpine, library/alpine, myorg/app), else its path at the registry
	// (library/alpine for docker.io/alpine).
	Repo string
	// Tag is the tag, latest when neither a tag nor a digest is given.
	Tag string
	// Digest pins the manifest when set.
	Digest digest.Digest
}

// ParseImage parses an image name with the docker reference grammar
// (github.com/distribution/reference). Errors say what is wrong and give
// examples of valid names.
func ParseImage(s string) (Image, error) {
	fail := func(why string) (Image, error) {
		return Image{}, fmt.Errorf("invalid image %q: %s (want e.g. alpine:3.20, myorg/app@sha256:..., ghcr.io/owner/app:1)", s, why)
	}
	in := strings.TrimSpace(s)
	if in == "" {
		return fail("empty name")
	}
	named, err := reference.ParseNormalizedNamed(in)
	if err != nil {
		return fail(referenceProblem(in, err))
	}
	img := Image{Raw: s, Repo: reference.Path(named)}
	// Whether the user named a registry: the grammar's answer, except that
	// it reports docker.io for a name without one, too.
	first, _, hasSlash := strings.Cut(in, "/")
	switch {
	case hasSlash && (reference.Domain(named) != DockerHub || CanonicalRegistry(first) == DockerHub):
		if !IsRegistryHost(strings.ToLower(first)) { // the grammar takes an upper-case first component for a host
			return fail("repository names are lower-case")
		}
		img.Registry = CanonicalRegistry(reference.Domain(named))
		img.Repo = HubRepository(img.Registry, img.Repo)
	case !strings.HasPrefix(in, img.Repo):
		img.Repo = reference.FamiliarName(named) // as written, without the library/ the grammar added
	}
	if err := ValidateName(img.Repo); err != nil {
		var oe *Error
		if errors.As(err, &oe) {
			return fail(oe.Message)
		}
		return fail(err.Error())
	}
	if t, ok := named.(reference.Tagged); ok {
		img.Tag = t.Tag()
	}
	if c, ok := named.(reference.Digested); ok {
		d, err := ParseDigest(c.Digest().String())
		if err != nil {
			return fail("bad digest")
		}
		img.Digest = d
	}
	if img.Tag == "" && img.Digest == "" {
		img.Tag = "latest"
	}
	return img, nil
}

// referenceProblem words a reference parse error for a person.
func referenceProblem(s string, err error) string {
	name, dg, pinned := strings.Cut(s, "@")
	if pinned {
		if _, derr := ParseDigest(dg); derr != nil {
			return "bad digest"
		}
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		if tag := name[i+1:]; ValidateTag(tag) != nil {
			return fmt.Sprintf("bad tag %q", tag)
		}
	}
	switch {
	case errors.Is(err, reference.ErrNameContainsUppercase):
		return "repository names are lower-case"
	case errors.Is(err, reference.ErrNameTooLong):
		return fmt.Sprintf("the name is longer than %d characters", reference.RepositoryNameTotalLengthMax)
	}
	return "components are lower-case letters and digits joined by '.', '_', '__' or '-', separated by '/'"
}

// MirrorName is the repository name to ask a mirror for: a name without a
// registry at its root (the mirror's default upstream), any other with
// the registry as a path prefix.
func (i Image) MirrorName() string {
	if i.Registry == "" {
		return i.Repo
	}
	return i.Registry + "/" + i.Repo
}

// Reference is the manifest reference: the digest when pinned, else the tag.
func (i Image) Reference() Reference {
	if i.Digest != "" {
		return Reference{Digest: i.Digest}
	}
	return Reference{Tag: i.Tag}
}

// BackgroundHeader, set to "1" on a request to regcache, marks it as
// background work (`regcache warm` sends it): such a request never spends
// the last budget_reserve counted pulls of the upstream's rate limit.
// Clients that pull for real leave it unset.
const BackgroundHeader = "X-Regcache-Background"
