package registry

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

// TestLazyPullRanges: a lazy-pulling client's ranges of a cold blob whose
// upstream is slow. A 10-byte range at the start is answered from the
// temporary file as soon as those bytes landed, before the fill commits;
// a range far ahead of the fill is fetched from the upstream as a range of
// its own (the stand-in sees that Range GET) while the fill goes on; every
// range's bytes are right, and the full blob is still committed verified.
func TestLazyPullRanges(t *testing.T) {
	const size = 2 << 20
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithBigImage(size)}})
	img := *e.imgs.Big
	layer := img.Layers[0]
	full := e.hubBlobOf(t, img.Repo, layer.Digest.String())
	n := int64(len(full))
	if n != layer.Size || n < 1<<20 {
		t.Fatalf("the stand-in's layer is %d bytes, the manifest says %d", n, layer.Size)
	}
	// 256 KiB/s: the whole layer takes 8 s, far more than the short wait.
	e.hub.SetFault(layer.Digest.String(), testenv.Throttle(256<<10))
	path := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)

	head := e.do(t, "GET", path, "Range", "bytes=0-9")
	if head.err != nil || head.status != 206 || !bytes.Equal(head.body, full[:10]) {
		t.Fatalf("first 10 bytes: %d %v, %d bytes", head.status, head.err, len(head.body))
	}
	if e.storeHolds(t, layer.Digest) {
		t.Fatal("the store held the blob before the 10-byte range was answered: the range waited for the fill")
	}

	far := n - 4096
	tail := e.do(t, "GET", path, "Range", fmt.Sprintf("bytes=%d-%d", far, far+99))
	if tail.err != nil || tail.status != 206 || !bytes.Equal(tail.body, full[far:far+100]) {
		t.Fatalf("far range: %d %v, %d bytes", tail.status, tail.err, len(tail.body))
	}
	if e.storeHolds(t, layer.Digest) {
		t.Fatal("the far range was answered only after the fill committed")
	}
	want := fmt.Sprintf("bytes=%d-%d", far, far+99)
	var sawRange, sawFill bool
	for _, r := range e.hub.Requests() {
		if r.Kind == testenv.KindBlob && r.Method == "GET" && r.Ref == string(layer.Digest) {
			sawRange = sawRange || r.Range == want
			sawFill = sawFill || r.Range == ""
		}
	}
	if !sawRange || !sawFill {
		t.Fatalf("upstream saw the range GET %q: %v, the full fill: %v (requests: %v)", want, sawRange, sawFill, e.hub.Requests())
	}
	suffix := e.do(t, "GET", path, "Range", "bytes=-5")
	if suffix.err != nil || suffix.status != 206 || !bytes.Equal(suffix.body, full[n-5:]) {
		t.Fatalf("suffix range: %d %v", suffix.status, suffix.err)
	}
	// A resumed download (a range from early on to the end) streams from
	// the fill, not from a second upstream transfer, and completes only
	// once the blob is verified.
	resume := e.do(t, "GET", path, "Range", "bytes=100-")
	if resume.err != nil || resume.status != 206 || !bytes.Equal(resume.body, full[100:]) {
		t.Fatalf("resumed download: %d %v, %d bytes", resume.status, resume.err, len(resume.body))
	}
	for _, r := range e.hub.Requests() {
		if r.Kind == testenv.KindBlob && r.Range == "bytes=100-" || strings.HasPrefix(r.Range, "bytes=100-") {
			t.Errorf("the resumed download went upstream as a range of its own: %+v", r)
		}
	}
	// The full fill went on and commits the verified blob.
	whole := e.do(t, "GET", path)
	if whole.err != nil || whole.status != 200 || !bytes.Equal(whole.body, full) {
		t.Fatalf("whole blob after the ranges: %d %v", whole.status, whole.err)
	}
	e.waitStored(t, layer.Digest)
	if got := e.hub.BlobBytes(string(layer.Digest)); got > n+n/8 {
		t.Errorf("upstream sent %d bytes for a %d-byte blob and three small ranges", got, n)
	}
}

// hubBlobOf reads a blob's bytes from the stand-in's uncounted admin host.
func (e *env) hubBlobOf(t *testing.T, repo, dgst string) []byte {
	t.Helper()
	resp, err := e.ts.Client().Get("http://" + e.hub.AdminHost + "/v2/" + repo + "/blobs/" + dgst)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil || resp.StatusCode != 200 {
		t.Fatalf("read %s from the stand-in: %d %v", dgst, resp.StatusCode, err)
	}
	return b.Bytes()
}

// waitStored waits for the asynchronous commit of d after its last byte.
func (e *env) waitStored(t *testing.T, d digest.Digest) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !e.storeHolds(t, d); {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not committed", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
