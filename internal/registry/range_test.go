package registry

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// TestOneRangeRule: every form of Range and the conditional headers get
// the same answer from a stored blob (hit) and from one being filled
// (miss), because both go through one rule.
func TestOneRangeRule(t *testing.T) {
	ref := newEnv(t, envOptions{})
	img := ref.imgs.Single
	blob := img.Layers[0]
	path := "/v2/" + img.Repo + "/blobs/" + string(blob.Digest)
	whole := ref.do(t, "GET", path)
	if whole.status != 200 || whole.err != nil {
		t.Fatalf("whole blob: %d %v", whole.status, whole.err)
	}
	full := whole.body
	n := int64(len(full))
	etag := `"` + string(blob.Digest) + `"`
	type want struct {
		status int
		from   int64 // body is full[from:to] for 200 and 206
		to     int64
		cr     string // Content-Range
	}
	for _, c := range []struct {
		name string
		hdr  []string
		want want
	}{
		{"single", []string{"Range", "bytes=0-9"}, want{206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)}},
		{"suffix", []string{"Range", "bytes=-5"}, want{206, n - 5, n, fmt.Sprintf("bytes %d-%d/%d", n-5, n-1, n)}},
		{"open-ended", []string{"Range", "bytes=10-"}, want{206, 10, n, fmt.Sprintf("bytes 10-%d/%d", n-1, n)}},
		{"end past the blob", []string{"Range", fmt.Sprintf("bytes=1-%d", n+100)}, want{206, 1, n, fmt.Sprintf("bytes 1-%d/%d", n-1, n)}},
		{"suffix of zero bytes", []string{"Range", "bytes=-0"}, want{416, 0, 0, fmt.Sprintf("bytes */%d", n)}},
		{"multi-range, one left in the blob", []string{"Range", fmt.Sprintf("bytes=0-9,%d-", n+5)}, want{206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)}},
		{"multi-range, none in the blob", []string{"Range", fmt.Sprintf("bytes=%d-,%d-", n, n+5)}, want{416, 0, 0, fmt.Sprintf("bytes */%d", n)}},
		{"too many ranges", []string{"Range", "bytes=" + strings.Repeat("0-1,", 16) + "0-1"}, want{416, 0, 0, fmt.Sprintf("bytes */%d", n)}},
		{"malformed", []string{"Range", "bytes=x-y"}, want{416, 0, 0, fmt.Sprintf("bytes */%d", n)}},
		{"other unit", []string{"Range", "items=0-1"}, want{416, 0, 0, fmt.Sprintf("bytes */%d", n)}},
		{"beyond the end", []string{"Range", fmt.Sprintf("bytes=%d-", n)}, want{416, 0, 0, fmt.Sprintf("bytes */%d", n)}},
		{"if-none-match", []string{"If-None-Match", etag}, want{304, 0, 0, ""}},
		{"if-none-match weak, in a list", []string{"If-None-Match", `"x", W/` + etag}, want{304, 0, 0, ""}},
		{"if-none-match other", []string{"If-None-Match", `"sha256:other"`}, want{200, 0, n, ""}},
		{"if-range matching", []string{"Range", "bytes=0-9", "If-Range", etag}, want{206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)}},
		{"if-range other", []string{"Range", "bytes=0-9", "If-Range", `"sha256:other"`}, want{200, 0, n, ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cold := newEnv(t, envOptions{})
			if cold.imgs.Single.Layers[0].Digest != blob.Digest {
				t.Fatal("the stand-in seeded different content")
			}
			for _, side := range []struct {
				name string
				e    *env
			}{{"hit", ref}, {"miss", cold}} {
				r := side.e.do(t, "GET", path, c.hdr...)
				if r.err != nil {
					t.Fatalf("%s: %v", side.name, r.err)
				}
				if r.status != c.want.status {
					t.Errorf("%s: status %d, want %d (%s)", side.name, r.status, c.want.status, truncate(r.body))
				}
				if got := r.header.Get("Content-Range"); got != c.want.cr {
					t.Errorf("%s: Content-Range %q, want %q", side.name, got, c.want.cr)
				}
				if c.want.status == 200 || c.want.status == 206 {
					if !bytes.Equal(r.body, full[c.want.from:c.want.to]) {
						t.Errorf("%s: body of %d bytes is not bytes %d-%d of the blob", side.name, len(r.body), c.want.from, c.want.to)
					}
				}
				if c.want.status == 304 && len(r.body) != 0 {
					t.Errorf("%s: 304 with a body of %d bytes", side.name, len(r.body))
				}
			}
		})
	}
}

// TestMultiRange: several ranges get a multipart/byteranges answer whose
// parts are the asked bytes in the asked order, from a stored blob and
// from one being filled alike; never the whole blob as 200.
func TestMultiRange(t *testing.T) {
	ref := newEnv(t, envOptions{})
	blob := ref.imgs.Single.Layers[0]
	path := "/v2/" + ref.imgs.Single.Repo + "/blobs/" + string(blob.Digest)
	whole := ref.do(t, "GET", path)
	if whole.status != 200 || whole.err != nil {
		t.Fatalf("whole blob: %d %v", whole.status, whole.err)
	}
	full := whole.body
	n := int64(len(full))
	want := []struct{ from, to int64 }{{0, 2}, {n - 4, n}, {5, 7}} // bytes=0-1,-4,5-6
	cold := newEnv(t, envOptions{})
	for _, side := range []struct {
		name string
		e    *env
	}{{"hit", ref}, {"miss", cold}} {
		r := side.e.do(t, "GET", path, "Range", "bytes=0-1, -4, 5-6")
		if r.err != nil || r.status != 206 {
			t.Fatalf("%s: %d %v %s", side.name, r.status, r.err, truncate(r.body))
		}
		mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			t.Fatalf("%s: Content-Type %q", side.name, r.header.Get("Content-Type"))
		}
		if cl := r.header.Get("Content-Length"); cl != fmt.Sprint(len(r.body)) {
			t.Errorf("%s: Content-Length %s for a body of %d bytes", side.name, cl, len(r.body))
		}
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		for i, w := range want {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("%s: part %d: %v", side.name, i, err)
			}
			if cr, wcr := p.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", w.from, w.to-1, n); cr != wcr {
				t.Errorf("%s: part %d Content-Range %q, want %q", side.name, i, cr, wcr)
			}
			got, _ := io.ReadAll(p)
			if !bytes.Equal(got, full[w.from:w.to]) {
				t.Errorf("%s: part %d is not bytes %d-%d", side.name, i, w.from, w.to-1)
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("%s: more parts than ranges (%v)", side.name, err)
		}
	}
}
