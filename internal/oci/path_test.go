package oci

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const d256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestParsePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		path    string
		kind    Kind
		repo    string
		ref     string
		errCode ErrorCode
	}{
		{name: "base", path: "/v2/", kind: KindBase},
		{name: "base no slash", path: "/v2", kind: KindBase},
		{name: "manifest tag", path: "/v2/library/alpine/manifests/3.20", kind: KindManifest, repo: "library/alpine", ref: "3.20"},
		{name: "one segment", path: "/v2/alpine/manifests/latest", kind: KindManifest, repo: "alpine", ref: "latest"},
		{name: "manifest digest", path: "/v2/a/b/c/manifests/" + d256, kind: KindManifest, repo: "a/b/c", ref: d256},
		{name: "repo named manifests", path: "/v2/manifests/manifests/v1", kind: KindManifest, repo: "manifests", ref: "v1"},
		{name: "registry prefix", path: "/v2/ghcr.io/owner/app/manifests/v1", kind: KindManifest, repo: "ghcr.io/owner/app", ref: "v1"},
		{name: "blob", path: "/v2/library/alpine/blobs/" + d256, kind: KindBlob, repo: "library/alpine", ref: d256},
		{name: "tags", path: "/v2/library/alpine/tags/list", kind: KindTags, repo: "library/alpine"},
		{name: "referrers", path: "/v2/x/referrers/" + d256, kind: KindReferrers, repo: "x", ref: d256},
		{name: "upload start", path: "/v2/x/blobs/uploads/", kind: KindUpload, repo: "x"},
		{name: "upload id", path: "/v2/x/y/blobs/uploads/abc", kind: KindUpload, repo: "x/y"},
		{name: "upper-case name", path: "/v2/Library/alpine/manifests/x", errCode: ErrNameInvalid},
		{name: "dot-dot name", path: "/v2/../../etc/manifests/x", errCode: ErrNameInvalid},
		{name: "empty component", path: "/v2/a//b/manifests/x", errCode: ErrNameInvalid},
		{name: "trailing sep", path: "/v2/a-/manifests/x", errCode: ErrNameInvalid},
		{name: "long name", path: "/v2/" + strings.Repeat("a", 256) + "/manifests/x", errCode: ErrNameInvalid},
		{name: "bad tag", path: "/v2/a/manifests/-x", errCode: ErrManifestInvalid},
		{name: "long tag", path: "/v2/a/manifests/" + strings.Repeat("t", 129), errCode: ErrManifestInvalid},
		{name: "bad digest hex", path: "/v2/a/blobs/sha256:xyz", errCode: ErrDigestInvalid},
		{name: "short digest", path: "/v2/a/blobs/sha256:abcd", errCode: ErrDigestInvalid},
		{name: "traversal digest", path: "/v2/a/blobs/sha256:../../etc/passwd", errCode: ErrNameUnknown},
		{name: "dotted digest", path: "/v2/a/blobs/sha256:..", errCode: ErrDigestInvalid},
		{name: "unknown algo", path: "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", errCode: ErrDigestInvalid},
		{name: "manifest bad digest", path: "/v2/a/manifests/sha256:00", errCode: ErrDigestInvalid},
		{name: "no endpoint", path: "/v2/a/b", errCode: ErrNameUnknown},
		{name: "not v2", path: "/v1/x", errCode: ErrNameUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ParsePath(tt.path)
			if tt.errCode != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != tt.errCode {
					t.Fatalf("ParsePath(%q) error = %v, want code %s", tt.path, err, tt.errCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tt.path, err)
			}
			got := p.Reference.String()
			if p.Kind == KindBlob || p.Kind == KindReferrers {
				got = p.Digest.String()
			}
			if p.Kind != tt.kind || p.Name != tt.repo || got != tt.ref {
				t.Errorf("ParsePath(%q) = %v %q %q, want %v %q %q", tt.path, p.Kind, p.Name, got, tt.kind, tt.repo, tt.ref)
			}
		})
	}
}

// FuzzParsePath checks that whatever parses is safe to use as a store key:
// names match the grammar and digests are canonical.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/library/alpine/manifests/3.20", "/v2/a/blobs/" + d256,
		"/v2/a/b/tags/list", "/v2/../x/manifests/y", "/v2/a/blobs/sha256:../../x", "/v2/a/referrers/" + d256} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if want, werr := parsePathSplit(s); !reflect.DeepEqual(p, want) || (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
			t.Fatalf("ParsePath(%q) = %+v, %v; split into segments: %+v, %v", s, p, err, want, werr)
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not *Error", err)
			}
			return
		}
		if strings.Contains(p.Name, "..") || strings.HasPrefix(p.Name, "/") {
			t.Fatalf("unsafe name %q from %q", p.Name, s)
		}
		if p.Digest != "" {
			if err := p.Digest.Validate(); err != nil {
				t.Fatalf("invalid digest %q accepted from %q", p.Digest, s)
			}
			if strings.ContainsAny(p.Digest.Encoded(), "./") {
				t.Fatalf("unsafe digest %q", p.Digest)
			}
		}
	})
}

// FuzzValidName: the hand-written name check agrees with the spec's
// regular expression on every input.
func FuzzValidName(f *testing.F) {
	for _, s := range []string{"library/alpine", "a", "a.b", "a__b", "a___b", "a--b", "a-", "-a", "a//b", "a/", "/a", "A", "a_-b", "a.b_c__d---e/f0", "", "a..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), nameRe.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, the grammar says %v", s, got, want)
		}
	})
}

// FuzzValidTag: the hand-written tag check agrees with the grammar.
func FuzzValidTag(f *testing.F) {
	for _, s := range []string{"latest", "3.20", "_a", ".a", "-a", "a-b.c_d", "", "a/b", strings.Repeat("a", 128), strings.Repeat("a", 129)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validTag(s), tagRe.MatchString(s); got != want {
			t.Fatalf("validTag(%q) = %v, the grammar says %v", s, got, want)
		}
	})
}

// parsePathSplit is ParsePath as first written, splitting the path into
// segments: the reference FuzzParsePath holds the cut-from-the-end parser to.
func parsePathSplit(p string) (Path, error) {
	if p == "/v2/" || p == "/v2" {
		return Path{Kind: KindBase}, nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return Path{}, notFound(p)
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	name := func(k int) string { return strings.Join(segs[:n-k], "/") }
	switch {
	case n >= 3 && segs[n-2] == "manifests":
		return parseWith(name(2), KindManifest, segs[n-1])
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		return parseWith(name(2), KindUpload, "")
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		return parseWith(name(3), KindUpload, "")
	case n >= 3 && segs[n-2] == "blobs":
		return parseWith(name(2), KindBlob, segs[n-1])
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		return parseWith(name(2), KindTags, "")
	case n >= 3 && segs[n-2] == "referrers":
		return parseWith(name(2), KindReferrers, segs[n-1])
	}
	return Path{}, notFound(p)
}
