package upstream_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/upstream"
)

// connCounter is a registry that counts the connections open to it (idle
// ones included) and keeps the peak. It serves blobs slowly and challenges
// for a bearer token whose realm is on the same host.
type connCounter struct {
	srv   *httptest.Server
	blobs map[digest.Digest][]byte

	mu         sync.Mutex
	open, peak int
}

func newConnCounter(t *testing.T, n int) *connCounter {
	t.Helper()
	cc := &connCounter{blobs: map[digest.Digest][]byte{}}
	rng := rand.New(rand.NewPCG(1, 2))
	for range n {
		b := make([]byte, 128<<10)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		cc.blobs[digest.FromBytes(b)] = b
	}
	cc.srv = httptest.NewUnstartedServer(http.HandlerFunc(cc.serve))
	cc.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		switch s {
		case http.StateNew:
			cc.open++
			cc.peak = max(cc.peak, cc.open)
		case http.StateClosed, http.StateHijacked:
			cc.open--
		}
	}
	cc.srv.Start()
	t.Cleanup(cc.srv.Close)
	return cc
}

func (cc *connCounter) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		fmt.Fprint(w, `{"token":"t1","expires_in":300}`)
		return
	}
	if r.Header.Get("Authorization") != "Bearer t1" {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, cc.srv.URL))
		http.Error(w, strings.Repeat("unauthorized ", 1000), http.StatusUnauthorized) // a body left unread would hold the connection
		return
	}
	d := digest.Digest(r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
	b, ok := cc.blobs[d]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	for off := 0; off < len(b); off += 32 << 10 { // 128 KiB in about 80ms
		w.Write(b[off : off+32<<10])
		w.(http.Flusher).Flush()
		time.Sleep(20 * time.Millisecond)
	}
}

func (cc *connCounter) peakConns() int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.peak
}

// TestMaxConnectionsHolds: ten cold blobs fetched at once under
// max_connections 2 never open more than two connections to the upstream
// (its token realm on the same host included), and all ten arrive right.
// With max_connections 1 the token request does not wait for the
// connection of the 401 that asked for it. Without the bound, ten
// connections open.
func TestMaxConnectionsHolds(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			cc := newConnCounter(t, 10)
			c, err := upstream.New("test", cc.srv.URL, auth.Credentials{}, upstream.WithMaxConnections(n))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			// The requests over the bound wait for a connection, and say so.
			var peakWaiting atomic.Int64
			sampled := make(chan struct{})
			stopSampling := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					if w := c.Health().Waiting; w > peakWaiting.Load() {
						peakWaiting.Store(w)
					}
					select {
					case <-stopSampling:
						return
					case <-time.After(time.Millisecond):
					}
				}
			}()
			var wg sync.WaitGroup
			for d, want := range cc.blobs {
				wg.Go(func() {
					b, err := c.BlobGet(ctx, "app", d, 0)
					if err != nil {
						t.Error(err)
						return
					}
					defer b.Body.Close()
					got, err := io.ReadAll(b.Body)
					if err != nil || digest.FromBytes(got) != d || len(got) != len(want) {
						t.Errorf("blob %s: %d bytes, %v", d, len(got), err)
					}
				})
			}
			wg.Wait()
			close(stopSampling)
			<-sampled
			if p := cc.peakConns(); p > n {
				t.Fatalf("the upstream saw %d connections at once, want at most %d", p, n)
			}
			if w := peakWaiting.Load(); w == 0 || w > int64(len(cc.blobs)) {
				t.Errorf("requests waiting for a connection peaked at %d, want between 1 and %d", w, len(cc.blobs))
			}
			if w := c.Health().Waiting; w != 0 {
				t.Errorf("%d requests still counted as waiting after all were served", w)
			}
		})
	}
}
