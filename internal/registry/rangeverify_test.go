package registry

import (
	"bytes"
	"fmt"
	"sync"
	"testing"

	"github.com/regcache/regcache/internal/testenv"
)

// TestRangeToEndNeverUnverified: during a fill from an upstream that sends
// wrong bytes, "Range: bytes=N-" (a range that ends at the blob's end,
// starting where the fill will not be for seconds) is never answered
// complete with wrong bytes: it is not passed through from an upstream
// range, it streams from the fill and is cut when the fill fails.
func TestRangeToEndNeverUnverified(t *testing.T) {
	const size = 2 << 20
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithBigImage(size)}})
	img := *e.imgs.Big
	layer := img.Layers[0]
	full := e.hubBlobOf(t, img.Repo, layer.Digest.String())
	n := int64(len(full))
	// The stand-in flips the blob's middle byte in every response that
	// covers it, and sends 512 KiB/s: the fill reaches the range's start
	// only after about two seconds.
	e.hub.SetFault(layer.Digest.String(), testenv.Throttle(512<<10), testenv.Corrupt())
	start := n/2 - 1000
	path := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
	r := e.do(t, "GET", path, "Range", fmt.Sprintf("bytes=%d-", start))
	if r.err == nil && r.status == 206 && int64(len(r.body)) == n-start {
		if !bytes.Equal(r.body, full[start:]) {
			t.Fatalf("bytes=%d- answered 206 complete with wrong bytes", start)
		}
		t.Fatalf("bytes=%d- completed although every upstream copy is corrupt", start)
	}
	for _, q := range e.hub.Requests() {
		if q.Kind == testenv.KindBlob && q.Method == "GET" && q.Ref == string(layer.Digest) && q.Range != "" {
			t.Errorf("a range to the blob's end went upstream as a range of its own: %+v", q)
		}
	}
	if e.storeHolds(t, layer.Digest) {
		t.Error("the corrupt blob was committed")
	}
}

// TestFarRangesBounded: 16 overlapping far ranges of one cold blob, asked
// at once while the fill is slow, cost the upstream a bounded number of
// range fetches (not one each), and every range gets its right bytes.
func TestFarRangesBounded(t *testing.T) {
	const size = 4 << 20
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithBigImage(size)}})
	img := *e.imgs.Big
	layer := img.Layers[0]
	full := e.hubBlobOf(t, img.Repo, layer.Digest.String())
	n := int64(len(full))
	e.hub.SetFault(layer.Digest.String(), testenv.Throttle(1<<20))
	path := "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
	// Start the fill, so the ranges below all find it running.
	if r := e.do(t, "GET", path, "Range", "bytes=0-9"); r.err != nil || r.status != 206 {
		t.Fatalf("first range: %d %v", r.status, r.err)
	}
	const clients = 16
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		first := n*3/4 - int64(i)*4096
		last := first + 256<<10
		wg.Go(func() {
			r := e.do(t, "GET", path, "Range", fmt.Sprintf("bytes=%d-%d", first, last))
			if r.err != nil || r.status != 206 || !bytes.Equal(r.body, full[first:last+1]) {
				errs <- fmt.Errorf("range %d-%d: %d %v, %d bytes", first, last, r.status, r.err, len(r.body))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ranged := 0
	for _, q := range e.hub.Requests() {
		if q.Kind == testenv.KindBlob && q.Method == "GET" && q.Ref == string(layer.Digest) && q.Range != "" {
			ranged++
		}
	}
	// At most 2 at once and half the blob's bytes in all (the fill's
	// budget for far ranges): on a loaded machine some end before others
	// start, so more than 2 in all, but never one per client (16 before).
	if ranged > clients/2 {
		t.Errorf("16 far ranges of one fill made %d upstream range fetches; want at most %d", ranged, clients/2)
	}
	e.waitStored(t, layer.Digest)
	if got := e.hub.BlobBytes(string(layer.Digest)); got > n+n/2 {
		t.Errorf("upstream sent %d bytes for a %d-byte blob", got, n)
	}
}
