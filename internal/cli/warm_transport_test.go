package cli

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"
)

// recordingProxy is a reverse proxy (net/http/httputil) in front of the
// mirror at target that records the X-Regcache-Background header of every
// request it forwards.
type recordingProxy struct {
	mu      sync.Mutex
	headers []string // "<path> <header value>"
}

func (p *recordingProxy) handler(t *testing.T, target string) http.Handler {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.headers = append(p.headers, r.URL.Path+" "+r.Header.Get(BackgroundHeader))
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})
}

func (p *recordingProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.headers...)
}

// TestWarmMarksRequestsBackground: every request warm sends, the probe of
// /v2/ included, carries X-Regcache-Background: 1; --mirror given as bare
// host:port means http://host:port.
func TestWarmMarksRequestsBackground(t *testing.T) {
	t.Parallel()
	_, _, m := hubMirror(t, nil)
	var p recordingProxy
	srv := httptest.NewServer(p.handler(t, m.URL))
	t.Cleanup(srv.Close)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	out, err := runCLI(t, "warm", "--mirror", hostPort, "--platform", "linux/amd64", "single", "multi")
	if err != nil {
		t.Fatalf("warm --mirror %s: %v\n%s", hostPort, err, out)
	}
	seen := p.seen()
	var blobs, manifests int
	for _, s := range seen {
		path, v, _ := strings.Cut(s, " ")
		if v != "1" {
			t.Errorf("request %s carried %s %q, want \"1\"", path, BackgroundHeader, v)
		}
		switch {
		case strings.Contains(path, "/blobs/"):
			blobs++
		case strings.Contains(path, "/manifests/"):
			manifests++
		}
	}
	if len(seen) == 0 || seen[0] != "/v2/ 1" || blobs == 0 || manifests == 0 {
		t.Errorf("requests seen: %q; want the /v2/ probe first, then manifests and blobs", seen)
	}
}

// TestWarmProbeUsesCACert: the mirror probe goes over the transport with
// --ca-cert, so a mirror with a private CA is reached, and without the CA
// the probe fails on the certificate.
func TestWarmProbeUsesCACert(t *testing.T) {
	t.Parallel()
	_, _, m := hubMirror(t, nil)
	var p recordingProxy
	srv := httptest.NewTLSServer(p.handler(t, m.URL))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "warm", "--mirror", srv.URL, "single")
	if err == nil || !strings.Contains(err.Error(), "reach the mirror at "+srv.URL) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("warm of a TLS mirror without its CA: %v", err)
	}
	if n := len(p.seen()); n != 0 {
		t.Fatalf("%d requests reached the mirror without a verified certificate", n)
	}
	out, err := runCLI(t, "warm", "--mirror", srv.URL, "--ca-cert", ca, "--platform", "linux/amd64", "single")
	if err != nil {
		t.Fatalf("warm with --ca-cert: %v\n%s", err, out)
	}
	if seen := p.seen(); len(seen) == 0 || seen[0] != "/v2/ 1" {
		t.Errorf("requests seen: %q", seen)
	}
}

// brokenBody ends with an error after n bytes.
type brokenBody struct {
	rc interface {
		Read([]byte) (int, error)
		Close() error
	}
	n int
}

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errors.New("cut by the test")
	}
	if len(p) > b.n {
		p = p[:b.n]
	}
	n, err := b.rc.Read(p)
	b.n -= n
	return n, err
}

func (b *brokenBody) Close() error { return b.rc.Close() }

// TestWarmResumesBrokenBlob: a blob transfer that breaks off is resumed
// with Range where it stopped, and the blob still verifies.
func TestWarmResumesBrokenBlob(t *testing.T) {
	t.Parallel()
	_, _, m := hubMirror(t, nil)
	u, _ := url.Parse(m.URL)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1 // the half before the cut reaches warm
	rp.ErrorLog = log.New(io.Discard, "", 0)
	var mu sync.Mutex
	cut := map[string]bool{}
	var ranges []string
	rp.ModifyResponse = func(resp *http.Response) error {
		r := resp.Request
		mu.Lock()
		defer mu.Unlock()
		if rg := r.Header.Get("Range"); rg != "" {
			ranges = append(ranges, rg)
		}
		if strings.Contains(r.URL.Path, "/blobs/") && resp.StatusCode == http.StatusOK && !cut[r.URL.Path] && resp.ContentLength > 10 {
			cut[r.URL.Path] = true
			resp.Body = &brokenBody{rc: resp.Body, n: int(resp.ContentLength / 2)}
		}
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	out, err := runCLI(t, "warm", "--mirror", srv.URL, "--platform", "linux/amd64", "single")
	if err != nil {
		t.Fatalf("warm through a proxy that cuts each blob once: %v\n%s", err, out)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(cut) == 0 || len(ranges) < len(cut) {
		t.Fatalf("cut %d blobs, saw Range requests %q; want one resume per cut blob", len(cut), ranges)
	}
	for _, rg := range ranges {
		if !strings.HasPrefix(rg, "bytes=") || strings.HasPrefix(rg, "bytes=0-") {
			t.Errorf("resume asked for %q, want bytes=<where it stopped>-", rg)
		}
	}
}

// TestWarmBlobCancelledWaitNotCounted: when the context ends while a blob
// waits for its turn, neither the image that started the fetch nor one
// that shares the blob takes it as fetched (blobFlight did, for the
// sharer).
func TestWarmBlobCancelledWaitNotCounted(t *testing.T) {
	t.Parallel()
	w := &warmer{blobSem: semaphore.NewWeighted(1), fetched: map[digest.Digest]bool{}}
	if err := w.blobSem.Acquire(t.Context(), 1); err != nil { // every fetch slot busy
		t.Fatal(err)
	}
	d := ocispec.Descriptor{Digest: digest.FromString("never fetched"), Size: 13}
	ctx, cancel := context.WithCancel(t.Context())
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- w.blob(ctx, &imageRun{}, d) }()
	}
	cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("blob with the context cancelled while waiting: %v, want context.Canceled", err)
		}
	}
	if w.fetched[d.Digest] {
		t.Error("a blob never fetched is recorded as fetched")
	}
}
