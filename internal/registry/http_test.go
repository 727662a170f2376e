package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/regcache/regcache/internal/metrics"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
)

// The tests in this file hold the registry's HTTP rules against
// fakeContent: what the content service answers is given, and only what
// the registry makes of it is checked.

var testRegistries = []mirror.Registry{
	{Name: "docker.io"},
	{Name: "ghcr.io", Aliases: []string{"ghcr.mirror.internal"}},
}

var testManifest = func() *mirror.Manifest {
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	return &mirror.Manifest{Body: body, MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(body)}
}()

// requestLog is the access log's line of the one request served by a
// closed server.
func requestLog(t *testing.T, buf *syncBuffer) map[string]any {
	t.Helper()
	var line map[string]any
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "request" {
			if line != nil {
				t.Fatalf("more than one request line:\n%s", buf.String())
			}
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no request line in the log:\n%s", buf.String())
	}
	return line
}

// TestRoutes: each way a client names an upstream (containerd's ?ns=, a
// path prefix, a Host header or alias, none) reaches the content service
// as that upstream and its repository, in that order of precedence; an
// upstream that is not configured is NAME_UNKNOWN and nothing is asked.
func TestRoutes(t *testing.T) {
	t.Parallel()
	d := digest.FromString("some blob")
	tests := []struct {
		name, path string
		hdr        []string
		up, repo   string // "" when refused
		how        string
		status     int
		code       string
	}{
		{name: "default upstream at the root", path: "/v2/team/app/manifests/v1", up: "docker.io", repo: "team/app", how: "default"},
		{name: "official image gets library/", path: "/v2/alpine/manifests/v1", up: "docker.io", repo: "library/alpine", how: "default"},
		{name: "first component without a dot is a name", path: "/v2/ghcr/app/manifests/v1", up: "docker.io", repo: "ghcr/app", how: "default"},
		{name: "path prefix", path: "/v2/ghcr.io/org/app/manifests/v1", up: "ghcr.io", repo: "org/app", how: "prefix"},
		{name: "path prefix, deep name", path: "/v2/ghcr.io/org/team/app/manifests/v1", up: "ghcr.io", repo: "org/team/app", how: "prefix"},
		{name: "path prefix of a Docker Hub alias", path: "/v2/index.docker.io/alpine/manifests/v1", up: "docker.io", repo: "library/alpine", how: "prefix"},
		{name: "path prefix of a blob", path: "/v2/ghcr.io/org/app/blobs/" + d.String(), up: "ghcr.io", repo: "org/app", how: "prefix"},
		{name: "path prefix of a tag list", path: "/v2/ghcr.io/org/app/tags/list", up: "ghcr.io", repo: "org/app", how: "prefix"},
		{name: "path prefix of referrers", path: "/v2/ghcr.io/org/app/referrers/" + d.String(), up: "ghcr.io", repo: "org/app", how: "prefix"},
		{name: "ns", path: "/v2/org/app/manifests/v1?ns=ghcr.io", up: "ghcr.io", repo: "org/app", how: "ns"},
		{name: "ns of Docker Hub adds library/", path: "/v2/alpine/manifests/v1?ns=docker.io", up: "docker.io", repo: "library/alpine", how: "ns"},
		{name: "ns before a path prefix", path: "/v2/ghcr.io/org/app/manifests/v1?ns=docker.io", up: "docker.io", repo: "ghcr.io/org/app", how: "ns"},
		{name: "Host names an upstream", path: "/v2/org/app/manifests/v1", hdr: []string{"Host", "ghcr.io"}, up: "ghcr.io", repo: "org/app", how: "host"},
		{name: "Host with a port", path: "/v2/org/app/manifests/v1", hdr: []string{"Host", "ghcr.io:443"}, up: "ghcr.io", repo: "org/app", how: "host"},
		{name: "Host alias", path: "/v2/org/app/manifests/v1", hdr: []string{"Host", "ghcr.mirror.internal"}, up: "ghcr.io", repo: "org/app", how: "host"},
		{name: "Host alias in capitals with a port", path: "/v2/org/app/manifests/v1", hdr: []string{"Host", "GHCR.Mirror.Internal:5000"}, up: "ghcr.io", repo: "org/app", how: "host"},
		{name: "Host not an upstream", path: "/v2/org/app/manifests/v1", hdr: []string{"Host", "mirror.example"}, up: "docker.io", repo: "org/app", how: "default"},
		{name: "path prefix before Host", path: "/v2/docker.io/library/alpine/manifests/v1", hdr: []string{"Host", "ghcr.io"}, up: "docker.io", repo: "library/alpine", how: "prefix"},
		{name: "ns before Host", path: "/v2/alpine/manifests/v1?ns=docker.io", hdr: []string{"Host", "ghcr.io"}, up: "docker.io", repo: "library/alpine", how: "ns"},
		{name: "unknown path prefix", path: "/v2/quay.io/org/app/manifests/v1", status: 404, code: "NAME_UNKNOWN"},
		{name: "localhost is a registry host", path: "/v2/localhost/app/manifests/v1", status: 404, code: "NAME_UNKNOWN"},
		{name: "unknown ns", path: "/v2/org/app/manifests/v1?ns=quay.io", status: 404, code: "NAME_UNKNOWN"},
		{name: "a registry with a port is no path prefix", path: "/v2/registry.example:5000/app/manifests/v1", status: 400, code: "NAME_INVALID"},
		{name: "name invalid", path: "/v2/Team/app/manifests/v1", status: 400, code: "NAME_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent(testRegistries...)
			var buf syncBuffer
			ts := fakeServer(t, fc, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
			r := call(t, ts, "GET", tt.path, tt.hdr...)
			ts.Close() // the log line is written
			asked := fc.asked()
			if tt.up == "" {
				if r.status != tt.status || envelope(t, r.body).Errors[0].Code != oci.ErrorCode(tt.code) {
					t.Fatalf("GET %s = %d %s, want %d %s", tt.path, r.status, r.body, tt.status, tt.code)
				}
				if len(asked) != 0 {
					t.Fatalf("the content service was asked %+v for a refused route", asked)
				}
				return
			}
			if len(asked) != 1 {
				t.Fatalf("the content service was asked %d times, want once", len(asked))
			}
			if got := asked[0].req; got.Upstream != tt.up || got.Repo != tt.repo {
				t.Errorf("routed to %s %s, want %s %s", got.Upstream, got.Repo, tt.up, tt.repo)
			}
			line := requestLog(t, &buf)
			if line["route"] != tt.how || line["upstream"] != tt.up || line["repository"] != tt.repo {
				t.Errorf("logged route %v upstream %v repository %v, want %s %s %s", line["route"], line["upstream"], line["repository"], tt.how, tt.up, tt.repo)
			}
		})
	}
}

// TestMethods: the API is read-only: GET and HEAD of every resource, the
// base endpoint answered without the content service, every other method
// (and any upload) UNSUPPORTED before anything is asked; a HEAD has the
// GET's headers and no body.
func TestMethods(t *testing.T) {
	t.Parallel()
	fb := newFakeBlobs(t, 1, 1000)
	const tagList = `{"name":"team/app","tags":["v1"]}`
	mk := func() *fakeContent {
		fc := newFakeContent(testRegistries...)
		fc.manifests["v1"] = fakeAnswer[*mirror.Manifest]{v: testManifest}
		fc.blobs[fb.d] = fakeAnswer[func() *mirror.Blob]{v: fb.stored}
		fc.tags["team/app"] = fakeAnswer[*mirror.Listing]{v: &mirror.Listing{Body: []byte(tagList)}}
		return fc
	}
	blob := "/v2/team/app/blobs/" + fb.d.String()
	tests := []struct {
		method, path string
		status       int
		code         string
		body         string // "-": not checked
		length       string // Content-Length
		asked        bool
	}{
		{method: "GET", path: "/v2/", status: 200, body: "{}", length: "2"},
		{method: "GET", path: "/v2", status: 200, body: "{}", length: "2"},
		{method: "HEAD", path: "/v2/", status: 200, length: "2"},
		{method: "GET", path: "/v2/team/app/manifests/v1", status: 200, body: string(testManifest.Body), length: strconv.Itoa(len(testManifest.Body)), asked: true},
		{method: "HEAD", path: "/v2/team/app/manifests/v1", status: 200, length: strconv.Itoa(len(testManifest.Body)), asked: true},
		{method: "GET", path: blob, status: 200, body: string(fb.p.bytesOf(0, fb.size)), length: "1000", asked: true},
		{method: "HEAD", path: blob, status: 200, length: "1000", asked: true},
		{method: "HEAD", path: "/v2/team/app/tags/list", status: 200, length: strconv.Itoa(len(tagList)), asked: true},
		{method: "HEAD", path: "/v2/team/app/manifests/nope", status: 404, asked: true},
		{method: "POST", path: "/v2/team/app/blobs/uploads/", status: 405, code: "UNSUPPORTED"},
		{method: "GET", path: "/v2/team/app/blobs/uploads/", status: 405, code: "UNSUPPORTED"},
		{method: "PATCH", path: "/v2/team/app/blobs/uploads/some-id", status: 405, code: "UNSUPPORTED"},
		{method: "PUT", path: "/v2/team/app/manifests/v1", status: 405, code: "UNSUPPORTED"},
		{method: "DELETE", path: blob, status: 405, code: "UNSUPPORTED"},
		{method: "POST", path: "/v2/", status: 405, code: "UNSUPPORTED"},
		{method: "OPTIONS", path: "/v2/team/app/tags/list", status: 405, code: "UNSUPPORTED"},
		{method: "BREW", path: "/v2/team/app/manifests/v1", status: 405, code: "UNSUPPORTED"},
		{method: "DELETE", path: "/v2/Bad/thing", status: 405, code: "UNSUPPORTED"},
		{method: "GET", path: "/v2/team/app/nothing", status: 404, code: "NAME_UNKNOWN"},
		{method: "GET", path: "/v2/team/app/blobs/sha256:123", status: 400, code: "DIGEST_INVALID"},
		{method: "GET", path: "/v2/team/app/manifests/-x", status: 400, code: "MANIFEST_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			fc := mk()
			ts := fakeServer(t, fc)
			r := call(t, ts, tt.method, tt.path)
			if r.err != nil || r.status != tt.status {
				t.Fatalf("%d %v %s, want %d", r.status, r.err, truncate(r.body), tt.status)
			}
			if tt.code != "" {
				if got := envelope(t, r.body).Errors[0].Code; got != oci.ErrorCode(tt.code) {
					t.Errorf("code %s, want %s", got, tt.code)
				}
			}
			if tt.method == "HEAD" && len(r.body) != 0 {
				t.Errorf("HEAD answered with a body of %d bytes", len(r.body))
			}
			if tt.body != "" && string(r.body) != tt.body {
				t.Errorf("body %q, want %q", truncate(r.body), truncate([]byte(tt.body)))
			}
			if tt.length != "" && r.header.Get("Content-Length") != tt.length {
				t.Errorf("Content-Length %q, want %s", r.header.Get("Content-Length"), tt.length)
			}
			asked := fc.asked()
			if tt.asked != (len(asked) > 0) {
				t.Fatalf("content service asked %+v", asked)
			}
			for _, c := range asked {
				if c.req.Head != (tt.method == "HEAD") {
					t.Errorf("Request.Head %v for a %s", c.req.Head, tt.method)
				}
			}
		})
	}
}

// rangeCase is one Range request and its answer: the body is bytes
// [from, to) of the blob for a 200 or a 206.
type rangeCase struct {
	name     string
	hdr      []string
	status   int
	from, to int64
	cr       string // Content-Range
}

func rangeCases(n int64, etag string) []rangeCase {
	bad := fmt.Sprintf("bytes */%d", n)
	return []rangeCase{
		{"no range", nil, 200, 0, n, ""},
		{"single", []string{"Range", "bytes=0-9"}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)},
		{"one byte", []string{"Range", "bytes=7-7"}, 206, 7, 8, fmt.Sprintf("bytes 7-7/%d", n)},
		{"spaces around", []string{"Range", "bytes= 1 - 2"}, 206, 1, 3, fmt.Sprintf("bytes 1-2/%d", n)},
		{"last byte", []string{"Range", fmt.Sprintf("bytes=%d-%d", n-1, n-1)}, 206, n - 1, n, fmt.Sprintf("bytes %d-%d/%d", n-1, n-1, n)},
		{"suffix", []string{"Range", "bytes=-5"}, 206, n - 5, n, fmt.Sprintf("bytes %d-%d/%d", n-5, n-1, n)},
		{"suffix longer than the blob", []string{"Range", fmt.Sprintf("bytes=-%d", n+10)}, 206, 0, n, fmt.Sprintf("bytes 0-%d/%d", n-1, n)},
		{"open-ended", []string{"Range", "bytes=10-"}, 206, 10, n, fmt.Sprintf("bytes 10-%d/%d", n-1, n)},
		{"from zero, open-ended", []string{"Range", "bytes=0-"}, 206, 0, n, fmt.Sprintf("bytes 0-%d/%d", n-1, n)},
		{"end past the blob", []string{"Range", fmt.Sprintf("bytes=1-%d", n+100)}, 206, 1, n, fmt.Sprintf("bytes 1-%d/%d", n-1, n)},
		{"several, one left in the blob", []string{"Range", fmt.Sprintf("bytes=0-9,%d-", n+5)}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)},
		{"suffix of zero bytes", []string{"Range", "bytes=-0"}, 416, 0, 0, bad},
		{"beyond the end", []string{"Range", fmt.Sprintf("bytes=%d-", n)}, 416, 0, 0, bad},
		{"several, none in the blob", []string{"Range", fmt.Sprintf("bytes=%d-,%d-", n, n+5)}, 416, 0, 0, bad},
		{"too many ranges", []string{"Range", "bytes=" + strings.Repeat("0-1,", oci.MaxRanges) + "0-1"}, 416, 0, 0, bad},
		{"malformed", []string{"Range", "bytes=x-y"}, 416, 0, 0, bad},
		{"reversed", []string{"Range", "bytes=5-2"}, 416, 0, 0, bad},
		{"no numbers", []string{"Range", "bytes=-"}, 416, 0, 0, bad},
		{"negative start", []string{"Range", "bytes=-1-5"}, 416, 0, 0, bad},
		{"one malformed among good", []string{"Range", "bytes=0-1,x"}, 416, 0, 0, bad},
		{"other unit", []string{"Range", "items=0-1"}, 416, 0, 0, bad},
		{"if-none-match", []string{"If-None-Match", etag}, 304, 0, 0, ""},
		{"if-none-match weak, in a list", []string{"If-None-Match", `"x", W/` + etag}, 304, 0, 0, ""},
		{"if-none-match star", []string{"If-None-Match", "*"}, 304, 0, 0, ""},
		{"if-none-match other", []string{"If-None-Match", `"sha256:other"`}, 200, 0, n, ""},
		{"if-range matching", []string{"Range", "bytes=0-9", "If-Range", etag}, 206, 0, 10, fmt.Sprintf("bytes 0-9/%d", n)},
		{"if-range other", []string{"Range", "bytes=0-9", "If-Range", `"sha256:other"`}, 200, 0, n, ""},
		{"if-range other, range malformed", []string{"Range", "bytes=x", "If-Range", `"sha256:other"`}, 200, 0, n, ""},
	}
}

// TestBlobRanges: the one range rule and the blob's headers, for a blob
// sent from a file (sendfile) and one read through a reader: the same
// status, Content-Range, Content-Length and bytes; a 416 keeps
// Content-Range (bytes */size) and drops the digest.
func TestBlobRanges(t *testing.T) {
	t.Parallel()
	const n = 1<<20 + 13 // over the copy buffers
	fb := newFakeBlobs(t, 2, n)
	etag := `"` + fb.d.String() + `"`
	for _, body := range []struct {
		name string
		open func() *mirror.Blob
	}{{"file", fb.stored}, {"reader", fb.streamed}} {
		for _, c := range rangeCases(n, etag) {
			t.Run(body.name+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				fc := newFakeContent()
				fc.blobs[fb.d] = fakeAnswer[func() *mirror.Blob]{v: body.open}
				ts := fakeServer(t, fc)
				r := call(t, ts, "GET", "/v2/team/app/blobs/"+fb.d.String(), c.hdr...)
				if r.err != nil || r.status != c.status {
					t.Fatalf("status %d %v %s, want %d", r.status, r.err, truncate(r.body), c.status)
				}
				h := r.header
				if got := h.Get("Content-Range"); got != c.cr {
					t.Errorf("Content-Range %q, want %q", got, c.cr)
				}
				switch c.status {
				case 200, 206:
					if !bytes.Equal(r.body, fb.p.bytesOf(c.from, c.to)) {
						t.Errorf("body of %d bytes is not bytes %d-%d of the blob", len(r.body), c.from, c.to)
					}
					if h.Get("Content-Length") != strconv.Itoa(len(r.body)) {
						t.Errorf("Content-Length %q for %d bytes", h.Get("Content-Length"), len(r.body))
					}
					if h.Get("Docker-Content-Digest") != fb.d.String() || h.Get("ETag") != etag ||
						h.Get("Content-Type") != "application/octet-stream" || h.Get("Accept-Ranges") != "bytes" ||
						h.Get("Cache-Control") != "max-age=31536000" {
						t.Errorf("blob headers %v", h)
					}
				case 304:
					if len(r.body) != 0 || h.Get("ETag") != etag {
						t.Errorf("304 with %d bytes, ETag %q", len(r.body), h.Get("ETag"))
					}
				case 416:
					if e := envelope(t, r.body).Errors[0]; e.Code != oci.ErrRangeInvalid {
						t.Errorf("code %s", e.Code)
					}
					if h.Get("Docker-Content-Digest") != "" {
						t.Error("a 416 names the blob's digest")
					}
				}
			})
		}
	}
}

// TestMultiRangeAnswer: several ranges are one multipart/byteranges body,
// the parts in the order asked, with a Content-Length that is the body's;
// a HEAD gets the same headers and no body.
func TestMultiRangeAnswer(t *testing.T) {
	t.Parallel()
	const n = 300 << 10
	fb := newFakeBlobs(t, 3, n)
	want := []struct{ from, to int64 }{{0, 2}, {n - 4, n}, {5, 7}, {100 << 10, 200 << 10}} // bytes=0-1,-4,5-6,100K-(200K-1)
	rng := fmt.Sprintf("bytes=0-1, -4, 5-6, %d-%d", 100<<10, 200<<10-1)
	for _, body := range []struct {
		name string
		open func() *mirror.Blob
	}{{"file", fb.stored}, {"reader", fb.streamed}} {
		t.Run(body.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent()
			fc.blobs[fb.d] = fakeAnswer[func() *mirror.Blob]{v: body.open}
			ts := fakeServer(t, fc)
			path := "/v2/team/app/blobs/" + fb.d.String()
			r := call(t, ts, "GET", path, "Range", rng)
			if r.err != nil || r.status != 206 {
				t.Fatalf("%d %v %s", r.status, r.err, truncate(r.body))
			}
			mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
			if err != nil || mt != "multipart/byteranges" {
				t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
			}
			if cl := r.header.Get("Content-Length"); cl != strconv.Itoa(len(r.body)) {
				t.Errorf("Content-Length %s for a body of %d bytes", cl, len(r.body))
			}
			mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
			for i, w := range want {
				p, err := mr.NextPart()
				if err != nil {
					t.Fatalf("part %d: %v", i, err)
				}
				if cr, wcr := p.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", w.from, w.to-1, n); cr != wcr {
					t.Errorf("part %d Content-Range %q, want %q", i, cr, wcr)
				}
				if got, _ := io.ReadAll(p); !bytes.Equal(got, fb.p.bytesOf(w.from, w.to)) {
					t.Errorf("part %d is not bytes %d-%d", i, w.from, w.to-1)
				}
			}
			if _, err := mr.NextPart(); err != io.EOF {
				t.Errorf("more parts than ranges (%v)", err)
			}
			head := call(t, ts, "HEAD", path, "Range", rng)
			if head.status != 206 || len(head.body) != 0 || head.header.Get("Content-Length") != r.header.Get("Content-Length") {
				t.Errorf("HEAD: %d, %d bytes, Content-Length %q (GET's %q)", head.status, len(head.body), head.header.Get("Content-Length"), r.header.Get("Content-Length"))
			}
		})
	}
}

// TestBlobReadOnce: a blob the content service streams without caching
// (read once, its size maybe unknown) answers one range, refuses several
// with 416 rather than the whole blob, and, of unknown size, goes without
// Content-Length and refuses any Range without claiming a size.
func TestBlobReadOnce(t *testing.T) {
	t.Parallel()
	const n = 200 << 10
	fb := newFakeBlobs(t, 4, n)
	tests := []struct {
		name     string
		size     int64 // what the upstream said
		rng      string
		status   int
		from, to int64
		cr       string
		length   string
	}{
		{name: "whole", size: n, status: 200, from: 0, to: n, length: strconv.Itoa(n)},
		{name: "one range", size: n, rng: "bytes=100-199", status: 206, from: 100, to: 200, cr: fmt.Sprintf("bytes 100-199/%d", n), length: "100"},
		{name: "suffix", size: n, rng: "bytes=-10", status: 206, from: n - 10, to: n, cr: fmt.Sprintf("bytes %d-%d/%d", n-10, n-1, n), length: "10"},
		{name: "several ranges", size: n, rng: "bytes=0-1,5-6", status: 416, cr: fmt.Sprintf("bytes */%d", n)},
		{name: "several ranges, one in the blob", size: n, rng: fmt.Sprintf("bytes=0-1,%d-", n+1), status: 206, from: 0, to: 2, cr: fmt.Sprintf("bytes 0-1/%d", n), length: "2"},
		{name: "unknown size, whole", size: -1, status: 200, from: 0, to: n},
		{name: "unknown size, range", size: -1, rng: "bytes=0-9", status: 416},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent()
			fc.blobs[fb.d] = fakeAnswer[func() *mirror.Blob]{v: func() *mirror.Blob { return fb.passthrough(tt.size) }}
			ts := fakeServer(t, fc)
			var hdr []string
			if tt.rng != "" {
				hdr = []string{"Range", tt.rng}
			}
			r := call(t, ts, "GET", "/v2/team/app/blobs/"+fb.d.String(), hdr...)
			if r.err != nil || r.status != tt.status {
				t.Fatalf("%d %v %s, want %d", r.status, r.err, truncate(r.body), tt.status)
			}
			if got := r.header.Get("Content-Range"); got != tt.cr {
				t.Errorf("Content-Range %q, want %q", got, tt.cr)
			}
			if got := r.header.Get("Content-Length"); tt.status != 416 && got != tt.length {
				t.Errorf("Content-Length %q, want %q", got, tt.length)
			}
			if tt.status == 416 {
				if e := envelope(t, r.body).Errors[0]; e.Code != oci.ErrRangeInvalid {
					t.Errorf("code %s", e.Code)
				}
				return
			}
			if !bytes.Equal(r.body, fb.p.bytesOf(tt.from, tt.to)) {
				t.Errorf("body of %d bytes is not bytes %d-%d", len(r.body), tt.from, tt.to)
			}
		})
	}
}

// TestBlobCutShort: a blob whose bytes fail mid-answer (ending before
// their size, or not matching the digest) is never a complete answer: the
// connection is cut, the client sees a failed transfer short of the size,
// and the log and the observer say the answer was aborted (status 0).
func TestBlobCutShort(t *testing.T) {
	t.Parallel()
	const n = 512 << 10
	fb := newFakeBlobs(t, 5, n)
	tests := []struct {
		name string
		open func() *mirror.Blob
		rng  string
	}{
		{"stored, short", fb.truncated, ""},
		{"stored, short, open range", fb.truncated, "bytes=10-"},
		{"stored, short, several ranges", fb.truncated, fmt.Sprintf("bytes=0-9,%d-%d", n-100, n-1)},
		{"streamed, not its digest", fb.corrupt, ""},
		{"streamed, not its digest, one range", fb.corrupt, "bytes=0-99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent()
			fc.blobs[fb.d] = fakeAnswer[func() *mirror.Blob]{v: tt.open}
			seen := make(chan Served, 1)
			var buf syncBuffer
			ts := fakeServer(t, fc, WithObserver(func(s Served) { seen <- s }), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
			var hdr []string
			if tt.rng != "" {
				hdr = []string{"Range", tt.rng}
			}
			r := call(t, ts, "GET", "/v2/team/app/blobs/"+fb.d.String(), hdr...)
			if r.err == nil {
				t.Fatalf("a failed blob was answered as a complete %d (%d bytes)", r.status, len(r.body))
			}
			if int64(len(r.body)) >= n {
				t.Errorf("the client got %d bytes of a %d-byte blob", len(r.body), n)
			}
			if s := observed(t, seen); s.Status != 0 {
				t.Errorf("observer saw status %d, want 0 (aborted)", s.Status)
			}
			ts.Close()
			if line := requestLog(t, &buf); line["aborted"] != true || line["status"] != float64(0) {
				t.Errorf("log line %v: want aborted, status 0", line)
			}
		})
	}
}

// TestManifestAnswer: a manifest is sent byte for byte with its media
// type, length, digest and ETag, and the rule that applied; the client's
// Accept values and the background mark reach the content service.
func TestManifestAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		ref    string
		out    mirror.Outcome
		hdr    []string
		accept []string
		bg     bool
	}{
		{name: "by tag", method: "GET", ref: "v1"},
		{name: "by digest", method: "GET", ref: testManifest.Digest.String()},
		{name: "HEAD", method: "HEAD", ref: "v1"},
		{name: "a rule applied", method: "GET", ref: "v1", out: mirror.Outcome{Rule: "rules[2] docker.io/library/*:*"}},
		{name: "Accept values as sent", method: "GET", ref: "v1",
			hdr:    []string{"Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json", "Accept", "application/vnd.docker.distribution.manifest.v2+json"},
			accept: []string{"application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"}},
		{name: "background", method: "GET", ref: "v1", hdr: []string{mirror.BackgroundHeader, "1"}, bg: true},
		{name: "background header not 1", method: "GET", ref: "v1", hdr: []string{mirror.BackgroundHeader, "yes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent()
			fc.manifests[tt.ref] = fakeAnswer[*mirror.Manifest]{v: testManifest, out: tt.out}
			ts := fakeServer(t, fc)
			r := call(t, ts, tt.method, "/v2/team/app/manifests/"+tt.ref, tt.hdr...)
			if r.err != nil || r.status != 200 {
				t.Fatalf("%d %v %s", r.status, r.err, r.body)
			}
			h := r.header
			if h.Get("Content-Type") != testManifest.MediaType || h.Get("Content-Length") != strconv.Itoa(len(testManifest.Body)) ||
				h.Get("Docker-Content-Digest") != testManifest.Digest.String() || h.Get("ETag") != `"`+testManifest.Digest.String()+`"` ||
				h.Get("Docker-Distribution-API-Version") != "registry/2.0" || h.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v", h)
			}
			if got := h.Get("X-Regcache-Rule"); got != tt.out.Rule {
				t.Errorf("X-Regcache-Rule %q, want %q", got, tt.out.Rule)
			}
			want := testManifest.Body
			if tt.method == "HEAD" {
				want = nil
			}
			if !bytes.Equal(r.body, want) {
				t.Errorf("body %q, want %q", r.body, want)
			}
			req := fc.asked()[0].req
			if fmt.Sprint(req.Accept) != fmt.Sprint(tt.accept) || req.Background != tt.bg {
				t.Errorf("content service asked with Accept %q background %v; want %q %v", req.Accept, req.Background, tt.accept, tt.bg)
			}
		})
	}
}

// TestListingAnswers: tag lists and referrers pass n, last and
// artifactType once each (others dropped, a repeat or a bad n refused
// before anything is asked), keep their content type (JSON by default),
// and their Link comes back through the client's route.
func TestListingAnswers(t *testing.T) {
	t.Parallel()
	d := digest.FromString("subject")
	link := `</v2/org/app/tags/list?last=b&n=2>; rel="next"`
	tests := []struct {
		name, path string
		status     int
		code       string
		asked      string // what the content service got ("" when not asked)
		link       string
		ctype      string
	}{
		{name: "tags", path: "/v2/org/app/tags/list", status: 200, asked: "n=-1;last=", link: link, ctype: "application/json"},
		{name: "tags, n and last", path: "/v2/org/app/tags/list?n=2&last=b&junk=1", status: 200, asked: "n=2;last=b", link: link, ctype: "application/json"},
		{name: "tags, n=0", path: "/v2/org/app/tags/list?n=0", status: 200, asked: "n=0;last=", link: link, ctype: "application/json"},
		{name: "tags, path prefix keeps it in the Link", path: "/v2/ghcr.io/org/app/tags/list", status: 200, asked: "n=-1;last=",
			link: `</v2/ghcr.io/org/app/tags/list?last=b&n=2>; rel="next"`, ctype: "application/json"},
		{name: "tags, ns keeps it in the Link", path: "/v2/org/app/tags/list?ns=ghcr.io", status: 200, asked: "n=-1;last=",
			link: `</v2/org/app/tags/list?last=b&n=2&ns=ghcr.io>; rel="next"`, ctype: "application/json"},
		{name: "tags, negative n", path: "/v2/org/app/tags/list?n=-1", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags, n not a number", path: "/v2/org/app/tags/list?n=abc", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags, n twice", path: "/v2/org/app/tags/list?n=1&n=2", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "tags, last twice", path: "/v2/org/app/tags/list?last=a&last=b", status: 400, code: "PAGINATION_NUMBER_INVALID"},
		{name: "referrers", path: "/v2/org/app/referrers/" + d.String(), status: 200, asked: "", ctype: oci.MediaTypeOCIIndex},
		{name: "referrers, artifactType only", path: "/v2/org/app/referrers/" + d.String() + "?junk=1&artifactType=application%2Fx.sbom", status: 200,
			asked: "artifactType=application%2Fx.sbom", ctype: oci.MediaTypeOCIIndex},
		{name: "referrers, artifactType twice", path: "/v2/org/app/referrers/" + d.String() + "?artifactType=a&artifactType=b", status: 400, code: "PAGINATION_NUMBER_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent(testRegistries...)
			fc.tags["org/app"] = fakeAnswer[*mirror.Listing]{v: &mirror.Listing{Body: []byte(`{"name":"org/app","tags":["a","b"]}`), Link: link}}
			fc.referrers[d] = fakeAnswer[*mirror.Listing]{v: &mirror.Listing{Body: []byte(`{"schemaVersion":2,"manifests":[]}`), ContentType: oci.MediaTypeOCIIndex}}
			ts := fakeServer(t, fc)
			r := call(t, ts, "GET", tt.path)
			if r.err != nil || r.status != tt.status {
				t.Fatalf("%d %v %s, want %d", r.status, r.err, r.body, tt.status)
			}
			asked := fc.asked()
			if tt.code != "" {
				if got := envelope(t, r.body).Errors[0].Code; got != oci.ErrorCode(tt.code) {
					t.Errorf("code %s, want %s", got, tt.code)
				}
				if len(asked) != 0 {
					t.Errorf("a refused listing asked the content service %+v", asked)
				}
				return
			}
			if len(asked) != 1 || asked[0].ref != tt.asked {
				t.Fatalf("content service asked %+v, want %q", asked, tt.asked)
			}
			if got := r.header.Get("Link"); got != tt.link {
				t.Errorf("Link %q, want %q", got, tt.link)
			}
			if r.header.Get("Content-Type") != tt.ctype || r.header.Get("Content-Length") != strconv.Itoa(len(r.body)) {
				t.Errorf("Content-Type %q, Content-Length %q for %d bytes", r.header.Get("Content-Type"), r.header.Get("Content-Length"), len(r.body))
			}
		})
	}
}

// TestErrorAnswers: whatever the content service fails with is the spec's
// envelope with the code's status (or the error's own), Retry-After when
// it has one, on GET and HEAD alike; an error that is not an *oci.Error
// is a 500 that tells the client nothing of it.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	secret := "open /var/lib/regcache/blobs/sha256/ab: permission denied"
	tests := []struct {
		name   string
		err    error
		status int
		code   string
		retry  string
		hidden bool // the message is not the error's
	}{
		{name: "manifest unknown", err: oci.Errorf(oci.ErrManifestUnknown, "upstream docker.io has no team/app:v1"), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "blob unknown", err: oci.Errorf(oci.ErrBlobUnknown, "not held"), status: 404, code: "BLOB_UNKNOWN"},
		{name: "name unknown", err: oci.Errorf(oci.ErrNameUnknown, "no such repository"), status: 404, code: "NAME_UNKNOWN"},
		{name: "denied", err: oci.Errorf(oci.ErrDenied, "the mirror's upstream credentials do not give access"), status: 403, code: "DENIED"},
		{name: "unauthorized", err: oci.Errorf(oci.ErrUnauthorized, "log in"), status: 401, code: "UNAUTHORIZED"},
		{name: "rate limited", err: &oci.Error{Code: oci.ErrTooManyRequests, Message: "the upstream's rate limit is exhausted", RetryAfter: "30"}, status: 429, code: "TOOMANYREQUESTS", retry: "30"},
		{name: "upstream down", err: oci.Errorf(oci.ErrUnavailable, "upstream down; nothing is cached for this request"), status: 503, code: "UNAVAILABLE"},
		{name: "upstream garbage", err: &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusBadGateway, Message: "the upstream sent content that does not match its digest"}, status: 502, code: "UNAVAILABLE"},
		{name: "disk full", err: &oci.Error{Code: oci.ErrUnavailable, Status: http.StatusInsufficientStorage, Message: "the mirror's cache disk is full"}, status: 507, code: "UNAVAILABLE"},
		{name: "storage failed", err: oci.Errorf(oci.ErrUnknown, "the mirror's cache storage failed: read: input/output error"), status: 500, code: "UNKNOWN"},
		{name: "wrapped", err: fmt.Errorf("fetch: %w", oci.Errorf(oci.ErrDenied, "refused")), status: 403, code: "DENIED"},
		{name: "not an oci error", err: errors.New(secret), status: 500, code: "UNKNOWN", hidden: true},
		{name: "cancelled, client still there", err: fmt.Errorf("read: %w", context.Canceled), status: 500, code: "UNKNOWN", hidden: true},
	}
	fb := newFakeBlobs(t, 6, 100)
	for _, tt := range tests {
		for _, kind := range []string{"manifests/v1", "blobs/" + fb.d.String(), "tags/list"} {
			for _, method := range []string{"GET", "HEAD"} {
				t.Run(tt.name+"/"+method+" "+strings.Split(kind, "/")[0], func(t *testing.T) {
					t.Parallel()
					fc := newFakeContent()
					fc.failing["team/app"] = tt.err
					seen := make(chan Served, 1)
					var buf syncBuffer
					ts := fakeServer(t, fc, WithObserver(func(s Served) { seen <- s }), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
					r := call(t, ts, method, "/v2/team/app/"+kind)
					if r.err != nil || r.status != tt.status {
						t.Fatalf("%d %v %s, want %d", r.status, r.err, r.body, tt.status)
					}
					h := r.header
					if h.Get("Content-Type") != "application/json; charset=utf-8" || h.Get("Docker-Distribution-API-Version") != "registry/2.0" ||
						h.Get("Docker-Content-Digest") != "" || h.Get("Retry-After") != tt.retry {
						t.Errorf("headers %v", h)
					}
					s := observed(t, seen)
					if string(s.ErrCode) != tt.code {
						t.Errorf("observer saw code %q, want %s", s.ErrCode, tt.code)
					}
					if method == "HEAD" {
						if len(r.body) != 0 {
							t.Errorf("HEAD with a body of %d bytes", len(r.body))
						}
						return
					}
					if h.Get("Content-Length") != strconv.Itoa(len(r.body)) {
						t.Errorf("Content-Length %q for %d bytes", h.Get("Content-Length"), len(r.body))
					}
					e := envelope(t, r.body).Errors[0]
					var oe *oci.Error
					switch {
					case e.Code != oci.ErrorCode(tt.code):
						t.Errorf("code %s, want %s", e.Code, tt.code)
					case tt.hidden && strings.Contains(e.Message, tt.err.Error()):
						t.Errorf("the client was told %q", e.Message)
					case !tt.hidden && errors.As(tt.err, &oe) && e.Message != oe.Message:
						t.Errorf("message %q, want %q", e.Message, oe.Message)
					}
					if s.ErrMessage != e.Message {
						t.Errorf("observer saw message %q, the client %q", s.ErrMessage, e.Message)
					}
					ts.Close()
					if tt.hidden && !strings.Contains(buf.String(), tt.err.Error()) {
						t.Errorf("the log does not have the internal error:\n%s", buf.String())
					}
				})
			}
		}
	}
}

// authzFunc is an Authorizer from a function.
type authzFunc func(w http.ResponseWriter, r *http.Request, upstream, repo string) error

func (f authzFunc) Authorize(w http.ResponseWriter, r *http.Request, upstream, repo string) error {
	return f(w, r, upstream, repo)
}

// TestAuthorizerAndMiddleware: the middleware sees every request first,
// inside the access log (what it answers itself is logged and observed,
// with the API's headers); the authorizer runs after routing, on the
// routed upstream and repository, and before the content service, which a
// refusal never reaches; the authorizer's headers go out with its
// refusal. The base endpoint, bad paths, writes and unknown registries are
// answered without asking the authorizer.
func TestAuthorizerAndMiddleware(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, method, path string
		hdr                []string
		status             int
		code               string
		trail              string // who saw the request, in order
		authz              string // upstream/repo the authorizer was asked about
	}{
		{name: "allowed", method: "GET", path: "/v2/alpine/manifests/v1", status: 200, trail: "mw authz content", authz: "docker.io library/alpine"},
		{name: "allowed, path prefix", method: "GET", path: "/v2/ghcr.io/org/app/tags/list", status: 200, trail: "mw authz content", authz: "ghcr.io org/app"},
		{name: "allowed, ns", method: "HEAD", path: "/v2/org/app/manifests/v1?ns=ghcr.io", status: 200, trail: "mw authz content", authz: "ghcr.io org/app"},
		{name: "unauthorized", method: "GET", path: "/v2/team/private/manifests/v1", status: 401, code: "UNAUTHORIZED", trail: "mw authz", authz: "docker.io team/private"},
		{name: "denied", method: "GET", path: "/v2/team/secret/blobs/" + digest.FromString("x").String(), status: 403, code: "DENIED", trail: "mw authz", authz: "docker.io team/secret"},
		{name: "authorizer failed", method: "GET", path: "/v2/team/broken/manifests/v1", status: 500, code: "UNKNOWN", trail: "mw authz", authz: "docker.io team/broken"},
		{name: "answered by the middleware", method: "GET", path: "/v2/alpine/manifests/v1", hdr: []string{"X-Refuse", "1"}, status: 403, code: "DENIED", trail: "mw"},
		{name: "base", method: "GET", path: "/v2/", status: 200, trail: "mw"},
		{name: "write", method: "PUT", path: "/v2/alpine/manifests/v1", status: 405, code: "UNSUPPORTED", trail: "mw"},
		{name: "bad name", method: "GET", path: "/v2/Alpine/manifests/v1", status: 400, code: "NAME_INVALID", trail: "mw"},
		{name: "unknown registry", method: "GET", path: "/v2/quay.io/org/app/manifests/v1", status: 404, code: "NAME_UNKNOWN", trail: "mw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var trail []string // the handler runs on one goroutine per request
			var authzGot string
			fc := newFakeContent(testRegistries...)
			fc.manifests["v1"] = fakeAnswer[*mirror.Manifest]{v: testManifest}
			fc.tags["org/app"] = fakeAnswer[*mirror.Listing]{v: &mirror.Listing{Body: []byte(`{}`)}}
			mw := func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					trail = append(trail, "mw")
					if r.Header.Get("X-Refuse") != "" {
						oci.Errorf(oci.ErrDenied, "your network may not use this mirror").Write(w, r)
						return
					}
					next.ServeHTTP(w, r)
				})
			}
			az := authzFunc(func(w http.ResponseWriter, r *http.Request, up, repo string) error {
				trail = append(trail, "authz")
				authzGot = up + " " + repo
				switch repo {
				case "team/private":
					w.Header().Set("WWW-Authenticate", `Bearer realm="https://mirror.example/token"`)
					return oci.Errorf(oci.ErrUnauthorized, "log in")
				case "team/secret":
					return oci.Errorf(oci.ErrDenied, "not yours")
				case "team/broken":
					return errors.New("policy store unreachable")
				}
				return nil
			})
			seen := make(chan Served, 1)
			ts := fakeServer(t, fc, WithMiddleware(mw), WithAuthorizer(az), WithObserver(func(s Served) { seen <- s }))
			r := call(t, ts, tt.method, tt.path, tt.hdr...)
			if r.err != nil || r.status != tt.status {
				t.Fatalf("%d %v %s, want %d", r.status, r.err, r.body, tt.status)
			}
			s := observed(t, seen)
			for range fc.asked() {
				trail = append(trail, "content")
			}
			if got := strings.Join(trail, " "); got != tt.trail {
				t.Errorf("seen by %q, want %q", got, tt.trail)
			}
			if authzGot != tt.authz {
				t.Errorf("authorizer asked about %q, want %q", authzGot, tt.authz)
			}
			if tt.code != "" && tt.method != "HEAD" {
				if got := envelope(t, r.body).Errors[0].Code; got != oci.ErrorCode(tt.code) {
					t.Errorf("code %s, want %s", got, tt.code)
				}
			}
			if s.Status != tt.status {
				t.Errorf("observer saw status %d, want %d", s.Status, tt.status)
			}
			// What the middleware answers itself has no code for the
			// observer: it writes the envelope without the registry.
			if wantCode := tt.code; len(tt.hdr) == 0 && string(s.ErrCode) != wantCode {
				t.Errorf("observer saw code %q, want %q", s.ErrCode, wantCode)
			}
			if r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" || r.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("headers %v", r.header)
			}
			if wantChallenge := tt.code == "UNAUTHORIZED"; (r.header.Get("WWW-Authenticate") != "") != wantChallenge {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestObserved: each answer is observed once, after it was sent, with what
// the content service said of it (cache result, stale reason, a joined
// fill) and what the client got (status, body bytes, error code); the
// same goes to the access log and the request metrics.
func TestObserved(t *testing.T) {
	t.Parallel()
	const n = 64 << 10
	fb := newFakeBlobs(t, 7, n)
	client := netip.MustParseAddr("203.0.113.7")
	type want struct {
		kind, method string
		cache        mirror.CacheResult
		joined       bool
		status       int
		bytes        int64
		upstream     string
		repo         string
		code         string
		stale        string
		tag          string
	}
	tests := []struct {
		name, method, path string
		hdr                []string
		want               want
	}{
		{name: "manifest hit by tag", method: "GET", path: "/v2/team/app/manifests/v1",
			want: want{"manifest", "GET", mirror.CacheHit, false, 200, int64(len(testManifest.Body)), "docker.io", "team/app", "", "", "v1"}},
		{name: "manifest by digest", method: "HEAD", path: "/v2/team/app/manifests/" + testManifest.Digest.String(),
			want: want{"manifest", "HEAD", mirror.CacheRevalidated, false, 200, 0, "docker.io", "team/app", "", "", ""}},
		{name: "manifest stale", method: "GET", path: "/v2/team/app/manifests/old",
			want: want{"manifest", "GET", mirror.CacheStale, false, 200, int64(len(testManifest.Body)), "docker.io", "team/app", "", "upstream docker.io is down", "old"}},
		{name: "manifest negative", method: "GET", path: "/v2/team/app/manifests/gone",
			want: want{"manifest", "GET", mirror.CacheNegative, false, 404, -1, "docker.io", "team/app", "MANIFEST_UNKNOWN", "", "gone"}},
		{name: "blob miss joined", method: "GET", path: "/v2/ghcr.io/org/app/blobs/" + fb.d.String(),
			want: want{"blob", "GET", mirror.CacheMiss, true, 200, n, "ghcr.io", "org/app", "", "", ""}},
		{name: "blob range", method: "GET", path: "/v2/ghcr.io/org/app/blobs/" + fb.d.String(), hdr: []string{"Range", "bytes=100-1099"},
			want: want{"blob", "GET", mirror.CacheMiss, true, 206, 1000, "ghcr.io", "org/app", "", "", ""}},
		{name: "blob range refused", method: "GET", path: "/v2/ghcr.io/org/app/blobs/" + fb.d.String(), hdr: []string{"Range", "bytes=x"},
			want: want{"blob", "GET", mirror.CacheMiss, true, 416, -1, "ghcr.io", "org/app", "RANGE_INVALID", "", ""}},
		{name: "tags", method: "GET", path: "/v2/team/app/tags/list",
			want: want{"tags", "GET", mirror.CacheHit, false, 200, 2, "docker.io", "team/app", "", "", ""}},
		{name: "base", method: "GET", path: "/v2/",
			want: want{"base", "GET", "", false, 200, 2, "", "", "", "", ""}},
		{name: "unknown registry", method: "GET", path: "/v2/quay.io/org/app/manifests/v1",
			want: want{"manifest", "GET", "", false, 404, -1, "", "", "NAME_UNKNOWN", "", "v1"}},
		{name: "method of a client's making", method: "BREW", path: "/v2/team/app/manifests/v1",
			want: want{"", "other", "", false, 405, -1, "", "", "UNSUPPORTED", "", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFakeContent(testRegistries...)
			fc.manifests["v1"] = fakeAnswer[*mirror.Manifest]{v: testManifest, out: mirror.Outcome{Cache: mirror.CacheHit}}
			fc.manifests[testManifest.Digest.String()] = fakeAnswer[*mirror.Manifest]{v: testManifest, out: mirror.Outcome{Cache: mirror.CacheRevalidated}}
			fc.manifests["old"] = fakeAnswer[*mirror.Manifest]{v: testManifest, out: mirror.Outcome{Cache: mirror.CacheStale, Stale: "upstream docker.io is down"}}
			fc.manifests["gone"] = fakeAnswer[*mirror.Manifest]{out: mirror.Outcome{Cache: mirror.CacheNegative}, err: oci.Errorf(oci.ErrManifestUnknown, "no team/app:gone (answer cached)")}
			fc.blobs[fb.d] = fakeAnswer[func() *mirror.Blob]{v: fb.stored, out: mirror.Outcome{Cache: mirror.CacheMiss, Joined: true}}
			fc.tags["team/app"] = fakeAnswer[*mirror.Listing]{v: &mirror.Listing{Body: []byte(`{}`)}, out: mirror.Outcome{Cache: mirror.CacheHit}}
			seen := make(chan Served, 2)
			var buf syncBuffer
			reg := prometheus.NewRegistry()
			m := metrics.New(reg)
			ts := fakeServer(t, fc, WithObserver(func(s Served) { seen <- s }), WithClientAddr(func(*http.Request) netip.Addr { return client }),
				WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))), WithMetrics(m))
			before := time.Now()
			r := call(t, ts, tt.method, tt.path, append([]string{"User-Agent", "containerd/2.1"}, tt.hdr...)...)
			if r.err != nil || r.status != tt.want.status {
				t.Fatalf("%d %v %s, want %d", r.status, r.err, r.body, tt.want.status)
			}
			ts.Close()
			if len(seen) != 1 {
				t.Fatalf("observed %d times, want once", len(seen))
			}
			s := observed(t, seen)
			w := tt.want
			if w.bytes < 0 {
				w.bytes = int64(len(r.body))
			}
			got := want{s.Kind, s.Method, s.Cache, s.Joined, s.Status, s.Bytes, s.Upstream, s.Repo, s.ErrCode, s.Stale, s.Tag}
			if got != w {
				t.Errorf("observed %+v,\nwant     %+v", got, w)
			}
			if s.Client != client || s.UserAgent != "containerd/2.1" || s.Time.Before(before) {
				t.Errorf("observed client %v, User-Agent %q, time %v", s.Client, s.UserAgent, s.Time)
			}
			line := requestLog(t, &buf)
			if line["status"] != float64(w.status) || line["bytes"] != float64(w.bytes) || line["method"] != w.method || line["path"] != strings.Split(tt.path, "?")[0] {
				t.Errorf("log line %v", line)
			}
			if c, _ := line["cache"].(string); c != string(w.cache) || (c != "" && line["hit"] != (c != "miss")) {
				t.Errorf("log cache %v hit %v, want %q", line["cache"], line["hit"], w.cache)
			}
			if e, _ := line["error"].(string); e != w.code {
				t.Errorf("log error %v, want %q", line["error"], w.code)
			}
			if st, _ := line["stale_reason"].(string); st != w.stale {
				t.Errorf("log stale_reason %v, want %q", line["stale_reason"], w.stale)
			}
			cache := string(w.cache)
			if cache == "" {
				cache = "none"
			}
			if v := counterValue(t, m.Requests.WithLabelValues(w.kind, w.method, cache, strconv.Itoa(w.status))); v != 1 {
				t.Errorf("request counter %s/%s/%s/%d = %v, want 1", w.kind, w.method, cache, w.status, v)
			}
			if v := counterValue(t, m.Bytes.WithLabelValues(cache)); v != float64(w.bytes) {
				t.Errorf("bytes counter %s = %v, want %d", cache, v, w.bytes)
			}
		})
	}
}

// TestObservedPeer: without WithClientAddr the observer gets the peer's
// address; the access log never has the query string (a redirect's query
// may carry a token).
func TestObservedPeer(t *testing.T) {
	t.Parallel()
	fc := newFakeContent(testRegistries...)
	fc.manifests["v1"] = fakeAnswer[*mirror.Manifest]{v: testManifest}
	seen := make(chan Served, 1)
	var buf syncBuffer
	ts := fakeServer(t, fc, WithObserver(func(s Served) { seen <- s }), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	if r := call(t, ts, "GET", "/v2/org/app/manifests/v1?ns=ghcr.io&token=s3cr3t"); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	ts.Close()
	if s := observed(t, seen); s.Client != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("observed client %v, want the peer 127.0.0.1", s.Client)
	}
	if strings.Contains(buf.String(), "s3cr3t") {
		t.Errorf("the query string was logged:\n%s", buf.String())
	}
}

// TestReasonBounded: a long error message goes to the client whole; the
// log and the observer keep its first maxLoggedReason bytes.
func TestReasonBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("upstream said: no. ", 200)
	fc := newFakeContent()
	fc.failing["team/app"] = oci.Errorf(oci.ErrUnavailable, "%s", long)
	seen := make(chan Served, 1)
	var buf syncBuffer
	ts := fakeServer(t, fc, WithObserver(func(s Served) { seen <- s }), WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	r := call(t, ts, "GET", "/v2/team/app/manifests/v1")
	ts.Close()
	if e := envelope(t, r.body).Errors[0]; e.Message != long {
		t.Errorf("the client got %d bytes of a %d-byte message", len(e.Message), len(long))
	}
	want := long[:maxLoggedReason] + "…"
	if s := observed(t, seen); s.ErrMessage != want {
		t.Errorf("observed a %d-byte reason, want %d bytes", len(s.ErrMessage), len(want))
	}
	if line := requestLog(t, &buf); line["reason"] != want {
		t.Errorf("logged a %d-byte reason, want %d bytes", len(fmt.Sprint(line["reason"])), len(want))
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// observed is the one Served the observer got; it fails the test if none
// comes.
func observed(t *testing.T, seen <-chan Served) Served {
	t.Helper()
	select {
	case s := <-seen:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("the answer was not observed")
		return Served{}
	}
}
