package oci

import (
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Grammar from the distribution spec ("Pulling manifests"): a name is one or
// more path components of lower-case alphanumerics joined by separators.
var (
	nameRe = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// MaxNameLength bounds a repository name, as Distribution does.
const MaxNameLength = 255

// ValidateName reports whether name is a valid repository name.
func ValidateName(name string) error {
	if name == "" {
		return Errorf(ErrNameInvalid, "repository name is empty")
	}
	if len(name) > MaxNameLength {
		return Errorf(ErrNameInvalid, "repository name is longer than %d characters", MaxNameLength)
	}
	if !validName(name) {
		return Errorf(ErrNameInvalid, "invalid repository name %q: components are lower-case letters and digits joined by '.', '_', '__' or '-', separated by '/'", truncate(name))
	}
	return nil
}

// validName is nameRe.MatchString without a regular expression: it runs
// on every request, and the regexp's backtracking was a tenth of a warm
// hit's CPU. FuzzValidName holds the two equal.
func validName(s string) bool {
	for {
		comp, rest, more := strings.Cut(s, "/")
		if !validComponent(comp) {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// validComponent: runs of [a-z0-9] joined by one separator: ".", "_",
// "__" or any number of "-".
func validComponent(c string) bool {
	i, n := 0, len(c)
	for {
		start := i
		for i < n && (c[i] >= 'a' && c[i] <= 'z' || c[i] >= '0' && c[i] <= '9') {
			i++
		}
		if i == start {
			return false // empty, or a separator where letters must be
		}
		if i == n {
			return true
		}
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < n && c[i] == '_' {
				i++
			}
		case '-':
			for i < n && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// validTag is tagRe.MatchString without a regular expression (it runs on
// every request by tag). FuzzValidTag holds the two equal.
func validTag(t string) bool {
	if len(t) == 0 || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// ValidateTag reports whether tag is a valid tag.
func ValidateTag(tag string) error {
	if !validTag(tag) {
		return Errorf(ErrManifestInvalid, "invalid tag %q: up to 128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'", truncate(tag))
	}
	return nil
}

// ParseDigest parses and validates a digest (sha256 or sha512, with the
// right length of lower-case hex).
func ParseDigest(s string) (digest.Digest, error) {
	if sha256Hex(s) { // nearly every request: go-digest's regexp is 0.5 µs of a 5 µs warm hit (issue 28)
		return digest.Digest(s), nil
	}
	d, err := digest.Parse(s)
	if err != nil {
		return "", Errorf(ErrDigestInvalid, "invalid digest %q: %v", truncate(s), err)
	}
	if d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512 {
		return "", Errorf(ErrDigestInvalid, "unsupported digest algorithm %q", d.Algorithm())
	}
	return d, nil
}

// Reference is a manifest reference: a tag or a digest, never both.
type Reference struct {
	Tag    string
	Digest digest.Digest
}

// ParseReference parses the <reference> of a manifest path. A string with a
// ':' must be a digest; anything else must be a tag.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d, err := ParseDigest(s)
		if err != nil {
			return Reference{}, err
		}
		return Reference{Digest: d}, nil
	}
	if err := ValidateTag(s); err != nil {
		return Reference{}, err
	}
	return Reference{Tag: s}, nil
}

// IsDigest reports whether the reference names a digest.
func (r Reference) IsDigest() bool { return r.Digest != "" }

func (r Reference) String() string {
	if r.IsDigest() {
		return r.Digest.String()
	}
	return r.Tag
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// sha256Hex reports whether s is "sha256:" and 64 lower-case hex digits:
// exactly the sha256 digests go-digest's Parse accepts
// (TestSHA256FastPathAgrees).
func sha256Hex(s string) bool {
	const prefix = "sha256:"
	if len(s) != len(prefix)+64 || s[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
