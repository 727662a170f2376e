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
	segs := strings.Split(rest, "/")
	n := len(segs)
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		return parseWith(segs[:n-2], KindManifest, segs[n-1])
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return parseWith(segs[:n-2], KindUpload, "")
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		return parseWith(segs[:n-3], KindUpload, "")
	case n >= 3 && segs[n-2] == "blobs":
		return parseWith(segs[:n-2], KindBlob, segs[n-1])
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return parseWith(segs[:n-2], KindTags, "")
	case n >= 3 && segs[n-2] == "referrers":
		return parseWith(segs[:n-2], KindReferrers, segs[n-1])
	}
	return Path{}, notFound(p)
}

func parseWith(nameSegs []string, kind Kind, last string) (Path, error) {
	name := strings.Join(nameSegs, "/")
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
