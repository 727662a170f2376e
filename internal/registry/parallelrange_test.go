package registry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/regcache/regcache/internal/testenv"
)

// TestParallelRangePull: containerd 2.x's parallel layer fetch, as it
// behaves on the wire (Range: bytes=0-, then open-ended ranges at
// i*chunk, at most 3 in flight, each closed after one chunk), of a cold
// layer at a stand-in throttled per connection. The fill is one, over
// several connections, and the clients' ranges steer it: the stand-in
// sends each byte of the layer about once (at most 1.05 times), for one
// puller and for three at once; every chunk is right. The chunks closed
// on purpose are logged at debug as client_closed: no "blob stream cut
// short" warning and no access-log status 0.
func TestParallelRangePull(t *testing.T) {
	const size, chunk = 40<<20 + 4321, 3 << 20
	for _, tt := range []struct {
		pullers int
		closed  bool
	}{{1, false}, {3, false}, {1, true}, {3, true}} {
		pullers := tt.pullers
		name := fmt.Sprintf("%d pullers, open-ended ranges", pullers)
		if tt.closed {
			name = fmt.Sprintf("%d pullers, closed ranges", pullers)
		}
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			e := newEnv(t, envOptions{seed: []testenv.SeedOption{testenv.WithBigImage(size)}, fillConns: 4, log: &logs})
			img := *e.imgs.Big
			layer := img.Layers[0]
			full := e.hubBlobOf(t, img.Repo, layer.Digest.String())
			// 8 MiB/s per connection: the layer takes 5 s over one.
			e.hub.SetFault(layer.Digest.String(), testenv.Throttle(8<<20))
			if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag); r.status != 200 {
				t.Fatalf("manifest: %d %v", r.status, r.err)
			}
			url := e.ts.URL + "/v2/" + img.Repo + "/blobs/" + string(layer.Digest)
			var wg sync.WaitGroup
			errs := make(chan error, pullers)
			for range pullers {
				wg.Go(func() { errs <- parallelRanges(t.Context(), e.ts.Client(), url, full, chunk, 3, tt.closed) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			e.waitStored(t, layer.Digest)
			got := e.hub.BlobBytes(string(layer.Digest))
			t.Logf("%s: the stand-in sent %.3f × the layer's bytes", name, float64(got)/float64(size))
			if got > size*105/100 {
				t.Errorf("the stand-in sent %d bytes of a %d-byte layer (%.2f ×), want at most 1.05 ×", got, size, float64(got)/float64(size))
			}
			checkQuiet(t, logs.String())
		})
	}
}

// parallelRanges fetches a blob as containerd 2.x's transfer service does
// with concurrent_layer_fetch_buffer = chunk and max_concurrent_downloads
// = inflight: "bytes=0-" first, then an open-ended range at each chunk's
// start, each read for one chunk and closed (with closed, each range asks
// one chunk, as a lazy puller does). Each chunk is checked against want.
func parallelRanges(ctx context.Context, c *http.Client, url string, want []byte, chunk, inflight int, closed bool) error {
	size := len(want)
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for off := 0; off < size; off += chunk {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n := min(chunk, size-off)
			if err := rangeChunk(ctx, c, url, off, n, want[off:off+n], closed && off > 0); err != nil {
				mu.Lock()
				first = cmpOr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func rangeChunk(ctx context.Context, c *http.Client, url string, off, n int, want []byte, closed bool) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	if closed {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close() // before the end of an open-ended range: the connection is dropped
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("range at %d: status %d", off, resp.StatusCode)
	}
	got := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		return fmt.Errorf("range at %d: %w", off, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("range at %d: wrong bytes", off)
	}
	return nil
}

// checkQuiet finds no warning about a blob stream cut short and no
// access-log line with status 0 among the JSON log lines, and at least one
// request logged with outcome client_closed.
func checkQuiet(t *testing.T, logs string) {
	t.Helper()
	closed := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Level   string
			Msg     string
			Status  *int   `json:"status"`
			Outcome string `json:"outcome"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch {
		case line.Msg == "blob stream cut short":
			t.Errorf("a chunk closed on purpose logged as a warning: %s", sc.Text())
		case line.Msg == "request" && line.Status != nil && *line.Status == 0:
			t.Errorf("a chunk closed on purpose logged with status 0: %s", sc.Text())
		case line.Msg == "request" && line.Outcome == "client_closed":
			closed++
		}
	}
	if closed == 0 {
		t.Error("no request logged with outcome client_closed")
	}
}
