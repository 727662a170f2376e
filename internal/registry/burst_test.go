package registry

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestColdBurst: 32 HTTP clients ask for a cold blob of 100+ MiB at once.
// The upstream sees one GET; every client gets the right bytes; first
// bytes reach clients before the fill completes; clients that hang up
// midway stop nothing.
func TestColdBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 3 GiB through loopback")
	}
	e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithBigImage(0)}})
	img := *e.imgs.Big
	blob := img.Layers[0]
	if blob.Size < 100<<20 {
		t.Fatalf("big layer is %d bytes", blob.Size)
	}
	// Throttled like a CDN connection, so the fill lasts long enough to
	// tell streaming from store-and-forward.
	e.hub.SetFault(string(blob.Digest), testenv.Throttle(150<<20))
	// The manifest first, as a client would (it also makes the repository
	// known to hold the blob).
	if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag); r.status != 200 {
		t.Fatalf("manifest: %d", r.status)
	}
	e.hub.ResetCounters()

	var committed time.Time
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !e.storeHolds(t, blob.Digest) {
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		committed = time.Now()
		mu.Unlock()
	}()

	const clients, quitters = 32, 4
	firstByte := make([]time.Time, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", e.ts.URL+"/v2/"+img.Repo+"/blobs/"+string(blob.Digest), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			if resp.ContentLength != blob.Size {
				errs[i] = fmt.Errorf("Content-Length %d, want %d", resp.ContentLength, blob.Size)
				return
			}
			buf := make([]byte, 64<<10)
			n, err := io.ReadFull(resp.Body, buf[:1])
			if n != 1 {
				errs[i] = fmt.Errorf("first byte: %v", err)
				return
			}
			firstByte[i] = time.Now()
			h := sha256.New()
			h.Write(buf[:1])
			if i < quitters { // hang up after a little
				io.CopyN(h, resp.Body, 1<<20)
				return
			}
			if _, err := io.CopyBuffer(h, resp.Body, buf); err != nil {
				errs[i] = err
				return
			}
			if got := fmt.Sprintf("sha256:%x", h.Sum(nil)); got != string(blob.Digest) {
				errs[i] = fmt.Errorf("wrong bytes: %s", got)
			}
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("blob never committed")
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if n := e.hub.CountRef("GET", testenv.KindBlob, string(blob.Digest)); n != 1 {
		t.Errorf("upstream saw %d GETs for the blob, want 1", n)
	}
	if got := e.hub.BlobBytes(string(blob.Digest)); got != blob.Size {
		t.Errorf("upstream sent %d bytes for a %d-byte blob", got, blob.Size)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, fb := range firstByte {
		if !fb.IsZero() && !fb.Before(committed) {
			t.Errorf("client %d got its first byte %v after the fill completed", i, fb.Sub(committed))
		}
	}
}
