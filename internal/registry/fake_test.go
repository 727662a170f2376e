package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// fakeContent is a content service answering from in-memory tables, so
// the registry's own rules (routing, methods, ranges, headers, the error
// envelope, the log and the observer) are tested apart from the mirror's
// (internal/mirror tests those at home). Answers are by reference or
// digest, whatever the repository; an error set for a repository answers
// every request for it. Every call is recorded.
type fakeContent struct {
	registries []mirror.Registry
	manifests  map[string]fakeAnswer[*mirror.Manifest] // by tag or digest
	blobs      map[digest.Digest]fakeAnswer[func() *mirror.Blob]
	tags       map[string]fakeAnswer[*mirror.Listing] // by repository
	referrers  map[digest.Digest]fakeAnswer[*mirror.Listing]
	failing    map[string]error // by repository: every request fails so

	mu    sync.Mutex
	calls []fakeCall
}

// fakeAnswer is one answer of the table: v, or err when set; out either
// way.
type fakeAnswer[T any] struct {
	v   T
	out mirror.Outcome
	err error
}

// fakeCall is one request the content service was asked.
type fakeCall struct {
	op  string // manifest, blob, tags, referrers
	req mirror.Request
	ref string // the reference, digest, or "n=…;last=…" of a tag list, or a referrers query
}

var _ Content = (*fakeContent)(nil)

func newFakeContent(regs ...mirror.Registry) *fakeContent {
	if len(regs) == 0 {
		regs = []mirror.Registry{{Name: oci.DockerHub}}
	}
	return &fakeContent{registries: regs,
		manifests: map[string]fakeAnswer[*mirror.Manifest]{}, blobs: map[digest.Digest]fakeAnswer[func() *mirror.Blob]{},
		tags: map[string]fakeAnswer[*mirror.Listing]{}, referrers: map[digest.Digest]fakeAnswer[*mirror.Listing]{},
		failing: map[string]error{}}
}

func (f *fakeContent) Registries() []mirror.Registry { return f.registries }

func (f *fakeContent) record(op string, req mirror.Request, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fakeCall{op: op, req: req, ref: ref})
	return f.failing[req.Repo]
}

// asked is what the content service was asked so far.
func (f *fakeContent) asked() []fakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeCall(nil), f.calls...)
}

func (f *fakeContent) Manifest(_ context.Context, req mirror.Request, ref oci.Reference) (*mirror.Manifest, mirror.Outcome, error) {
	key := ref.Tag
	if ref.IsDigest() {
		key = ref.Digest.String()
	}
	a, ok := f.manifests[key]
	if err := f.record("manifest", req, key); err != nil {
		return nil, a.out, err
	}
	if !ok {
		return nil, mirror.Outcome{Cache: mirror.CacheMiss}, oci.Errorf(oci.ErrManifestUnknown, "no manifest %s in the fake", key)
	}
	return a.v, a.out, a.err
}

func (f *fakeContent) Blob(_ context.Context, req mirror.Request, d digest.Digest) (*mirror.Blob, mirror.Outcome, error) {
	a, ok := f.blobs[d]
	if err := f.record("blob", req, d.String()); err != nil {
		return nil, a.out, err
	}
	if !ok {
		return nil, mirror.Outcome{Cache: mirror.CacheMiss}, oci.Errorf(oci.ErrBlobUnknown, "no blob %s in the fake", d)
	}
	if a.err != nil {
		return nil, a.out, a.err
	}
	return a.v(), a.out, nil
}

func (f *fakeContent) Tags(_ context.Context, req mirror.Request, n int, last string) (*mirror.Listing, mirror.Outcome, error) {
	a, ok := f.tags[req.Repo]
	if err := f.record("tags", req, fmt.Sprintf("n=%d;last=%s", n, last)); err != nil {
		return nil, a.out, err
	}
	if !ok {
		return nil, mirror.Outcome{}, oci.Errorf(oci.ErrNameUnknown, "no repository %s in the fake", req.Repo)
	}
	return a.v, a.out, a.err
}

func (f *fakeContent) Referrers(_ context.Context, req mirror.Request, d digest.Digest, query string) (*mirror.Listing, mirror.Outcome, error) {
	a, ok := f.referrers[d]
	if err := f.record("referrers", req, query); err != nil {
		return nil, a.out, err
	}
	if !ok {
		return nil, mirror.Outcome{}, oci.Errorf(oci.ErrManifestUnknown, "no referrers of %s in the fake", d)
	}
	return a.v, a.out, a.err
}

// pattern is blob content made from its offset alone (a stream with no
// buffer behind it): ReadAt computes the bytes asked.
type pattern struct{ seed byte }

func (p pattern) ReadAt(b []byte, off int64) (int, error) {
	for i := range b {
		x := uint64(off) + uint64(i)
		b[i] = byte(x*2654435761>>13) ^ byte(x>>8) ^ p.seed
	}
	return len(b), nil
}

// bytesOf is the pattern's bytes [from, to), for comparing answers.
func (p pattern) bytesOf(from, to int64) []byte {
	b := make([]byte, to-from)
	p.ReadAt(b, from)
	return b
}

func (p pattern) digest(size int64) digest.Digest {
	d, _ := digest.FromReader(io.NewSectionReader(p, 0, size))
	return d
}

// readerBlob is a committed blob read through a reader (no file under
// it: sent without sendfile). claimed is the size it says it has, which a
// damaged one overstates.
type readerBlob struct {
	*io.SectionReader
	claimed int64
}

var _ blobstore.Blob = readerBlob{}

func (b readerBlob) Size() int64  { return b.claimed }
func (b readerBlob) Close() error { return nil }

// fakeBlobs makes the kinds of mirror.Blob the content service answers
// with, each over the same pattern content of size bytes.
type fakeBlobs struct {
	t    testing.TB
	p    pattern
	size int64
	d    digest.Digest
	disk *disk.Store
}

func newFakeBlobs(t testing.TB, seed byte, size int64) *fakeBlobs {
	t.Helper()
	p := pattern{seed}
	fb := &fakeBlobs{t: t, p: p, size: size, d: p.digest(size)}
	var err error
	if fb.disk, err = disk.New(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	w, err := fb.disk.Create(t.Context(), fb.d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := io.Copy(w, io.NewSectionReader(p, 0, size)); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), size); err != nil {
		t.Fatal(err)
	}
	return fb
}

// stored is the blob committed in a disk store: sent by sendfile(2) to a
// connection.
func (fb *fakeBlobs) stored() *mirror.Blob {
	b, err := fb.disk.Open(context.Background(), fb.d)
	if err != nil {
		fb.t.Error(err)
		return nil
	}
	return mirror.NewBlob(fb.d, fill.FromStore(b))
}

// streamed is the blob committed in a store that reads it through a
// reader.
func (fb *fakeBlobs) streamed() *mirror.Blob {
	return mirror.NewBlob(fb.d, fill.FromStore(readerBlob{io.NewSectionReader(fb.p, 0, fb.size), fb.size}))
}

// truncated is a committed blob whose bytes end short of the size it
// claims (damage the content service did not catch).
func (fb *fakeBlobs) truncated() *mirror.Blob {
	return mirror.NewBlob(fb.d, fill.FromStore(readerBlob{io.NewSectionReader(fb.p, 0, fb.size/2), fb.size}))
}

// passthrough is the blob streamed from the upstream without caching
// (read once); size is what the upstream said (-1: nothing).
func (fb *fakeBlobs) passthrough(size int64) *mirror.Blob {
	body := io.NopCloser(io.NewSectionReader(fb.p, 0, fb.size))
	return mirror.NewBlob(fb.d, fill.NewPassthrough(fb.d, &upstream.Blob{Body: body, Size: size}))
}

// corrupt is a passthrough whose bytes do not match the digest.
func (fb *fakeBlobs) corrupt() *mirror.Blob {
	body := io.NopCloser(io.NewSectionReader(pattern{fb.p.seed + 1}, 0, fb.size))
	return mirror.NewBlob(fb.d, fill.NewPassthrough(fb.d, &upstream.Blob{Body: body, Size: fb.size}))
}

// fakeServer serves the registry API over fc on loopback.
func fakeServer(t testing.TB, fc *fakeContent, opts ...Option) *httptest.Server {
	t.Helper()
	opts = append([]Option{WithLogger(slog.New(slog.NewJSONHandler(t.Output(), nil)))}, opts...)
	ts := httptest.NewServer(New(fc, opts...).Handler())
	t.Cleanup(ts.Close)
	return ts
}

// call sends one request; hdr is name, value pairs (a name given twice
// adds a second value).
func call(t testing.TB, ts *httptest.Server, method, path string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// envelope decodes an error answer's body.
func envelope(t testing.TB, body []byte) oci.Envelope {
	t.Helper()
	var env oci.Envelope
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&env); err != nil || len(env.Errors) != 1 {
		t.Fatalf("error body %q: want the spec's envelope with one error (%v)", body, err)
	}
	return env
}
