package oci

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

// Kind is what a /v2/ path addresses.
type Kind int

// The kinds of /v2/ request regcache knows.
const (
	KindBase      Kind = iota + 1 // /v2/
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindTags                      // /v2/<name>/tags/list
	KindReferrers                 // /v2/<name>/referrers/<digest>
	KindUpload                    // /v2/<name>/blobs/uploads/[<id>] (push: unsupported)
)

func (k Kind) String() string {
	switch k {
	case KindBase:
		return "base"
	case KindManifest:
		return "manifest"
	case KindBlob:
		return "blob"
	case KindTags:
		return "tags"
	case KindReferrers:
		return "referrers"
	case KindUpload:
		return "upload"
	}
	return "unknown"
}

// Path is a parsed /v2/ request path.
type Path struct {
	Kind      Kind
	Name      string        // repository, as the client wrote it
	Reference Reference     // KindManifest
	Digest    digest.Digest // KindBlob, KindReferrers
}

// ParsePath parses the URL path of a distribution API request. Every
// component is validated, so a successful parse is safe to build store keys
// and upstream URLs from. Errors are *Error with the spec's code;
// a path that is no API endpoint at all is NAME_UNKNOWN with Status 404.
func ParsePath(p string) (Path, error) {
	if p == "/v2/" || p == "/v2" {
		return Path{Kind: KindBase}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return Path{}, notFound(p)
	}
	// The path is cut from its end without splitting it into a slice: it
	// runs on every request (FuzzParsePath holds it equal to the split).
	i := strings.LastIndexByte(rest, '/')
	if i < 0 {
		return Path{}, notFound(p)
	}
	head, last := rest[:i], rest[i+1:]
	j := strings.LastIndexByte(head, '/')
	if j < 0 {
		return Path{}, notFound(p)
	}
	name, kind := head[:j], head[j+1:]
	switch {
	case kind == "manifests":
		return parseWith(name, KindManifest, last)
	case kind == "blobs" && last == "uploads":
		return parseWith(name, KindUpload, "")
	case kind == "uploads":
		if k := strings.LastIndexByte(name, '/'); k >= 0 && name[k+1:] == "blobs" {
			return parseWith(name[:k], KindUpload, "")
		}
	case kind == "blobs":
		return parseWith(name, KindBlob, last)
	case kind == "tags" && last == "list":
		return parseWith(name, KindTags, "")
	case kind == "referrers":
		return parseWith(name, KindReferrers, last)
	}
	return Path{}, notFound(p)
}

func parseWith(name string, kind Kind, last string) (Path, error) {
	if err := ValidateName(name); err != nil {
		return Path{}, err
	}
	out := Path{Kind: kind, Name: name}
	switch kind {
	case KindManifest:
		ref, err := ParseReference(last)
		if err != nil {
			return Path{}, err
		}
		out.Reference = ref
	case KindBlob, KindReferrers:
		d, err := ParseDigest(last)
		if err != nil {
			return Path{}, err
		}
		out.Digest = d
	}
	return out, nil
}

func notFound(p string) *Error {
	return &Error{Code: ErrNameUnknown, Message: "no such endpoint: " + truncate(p) + " (regcache serves the read side of the OCI distribution API under /v2/)", Status: 404}
}
