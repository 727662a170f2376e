package upstream_test

import (
	"io"
	"sync"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// TestMaxBandwidthHoldsAcrossFills: two blob fetches at once from the
// Docker Hub stand-in (through its CDN redirect) under max_bandwidth 1 MiB/s
// read their 2 MiB together in no less than 80% of 2s, and every byte
// arrives right. Without the cap they take milliseconds.
func TestMaxBandwidthHoldsAcrossFills(t *testing.T) {
	t.Parallel()
	const size, rate = 1 << 20, 1 << 20
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(size))
	blob := imgs.Big.Layers[0]
	c, err := upstream.New("docker.io", hub.URL, auth.Credentials{}, upstream.WithMaxBandwidth(rate))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			b, err := c.BlobGet(t.Context(), imgs.Big.Repo, blob.Digest, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer b.Body.Close()
			v := blob.Digest.Algorithm().Digester()
			n, err := io.Copy(v.Hash(), b.Body)
			if err != nil || n != blob.Size || v.Digest() != blob.Digest {
				t.Errorf("read %d bytes (%v), digest %s; want %d bytes of %s", n, err, v.Digest(), blob.Size, blob.Digest)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if want := time.Duration(float64(2*blob.Size) / rate * 0.8 * float64(time.Second)); took < want {
		t.Fatalf("2 MiB under a 1 MiB/s cap took %s, want at least %s", took, want)
	}
	if took > 15*time.Second {
		t.Fatalf("took %s: the cap is far tighter than asked", took)
	}
	if got := hub.BlobBytes(blob.Digest.String()); got != 2*blob.Size {
		t.Fatalf("the hub sent %d bytes, want %d", got, 2*blob.Size)
	}
	t.Logf("2 MiB in %s under 1 MiB/s", took)
}
