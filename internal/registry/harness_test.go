package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/mirror"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// clock is a settable time source shared by the server and the upstream
// client, so TTLs and backoffs can pass without waiting.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a Server in front of a Docker Hub stand-in.
type env struct {
	hub      *testenv.Hub
	imgs     testenv.Images
	srv      *Server
	content  *mirror.Service
	storeDir string
	ts       *httptest.Server
	clock    *clock
	store    *disk.Store
	index    *cacheindex.Index
	fills    *fill.Manager
	up       *upstream.Client
}

type envOptions struct {
	freshness time.Duration
	seed      []testenv.SeedOption
	prefetch  bool
	quiet     bool // log warnings only (benchmarks)
	noMemory  bool // every hit reads the index and the store
	reserve   int  // budget_reserve as a count (0: the default 10%)
	fillConns int  // upstreams[].fill_connections (0: one stream)
	log       io.Writer
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	hub := testenv.NewHub(t)
	hub.SetCredentials("me", "hub-secret")
	e := &env{hub: hub, imgs: hub.Seed(t, o.seed...), clock: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	level := slog.LevelDebug
	if o.quiet {
		level = slog.LevelWarn
	}
	out := t.Output()
	if o.log != nil {
		out = io.MultiWriter(out, o.log)
	}
	log := slog.New(slog.NewJSONHandler(out, &slog.HandlerOptions{Level: level}))
	dir := t.TempDir()
	e.storeDir = dir
	var err error
	if e.store, err = disk.New(dir); err != nil {
		t.Fatal(err)
	}
	if e.index, err = cacheindex.Open(filepath.Join(dir, "index.db"), time.Hour); err != nil {
		t.Fatal(err)
	}
	tr := upstream.DefaultTransport()
	tr.ResponseHeaderTimeout = 500 * time.Millisecond
	e.up, err = upstream.New("docker.io", hub.URL, auth.Credentials{Username: "me", Password: "hub-secret"},
		upstream.WithTransport(tr), upstream.WithRetry(2, 10*time.Millisecond), upstream.WithClock(e.clock.Now),
		upstream.WithLogger(log), upstream.WithFillConnections(o.fillConns))
	if err != nil {
		t.Fatal(err)
	}
	e.fills = fill.New(e.store, fill.WithLogger(log), fill.WithResume(3, 10*time.Millisecond))
	freshness := o.freshness
	if freshness == 0 {
		freshness = time.Minute
	}
	e.content = mirror.New(e.store, e.index, e.fills, []*mirror.Upstream{{Name: "docker.io", Client: e.up}},
		mirror.WithLogger(log), mirror.WithClock(e.clock.Now), mirror.WithFreshness(freshness), mirror.WithPrefetch(o.prefetch, 4),
		mirror.WithManifestMemory(memoryBytes(o.noMemory)), mirror.WithBudgetReserve(o.reserve, 10))
	e.srv = New(e.content, WithLogger(log))
	e.ts = httptest.NewServer(e.srv.Handler())
	t.Cleanup(func() {
		e.ts.Close()
		e.content.Close()
		e.fills.Close()
		e.index.Close()
	})
	return e
}

// response is a finished client request.
type response struct {
	status int
	header http.Header
	body   []byte
	err    error // a transfer cut short
}

func (e *env) do(t testing.TB, method, path string, hdr ...string) response {
	t.Helper()
	req, _ := http.NewRequest(method, e.ts.URL+path, nil)
	req.Header.Set("Accept", strings.Join(oci.ManifestMediaTypes, ", "))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// pull fetches a manifest by tag, the platform manifests of an index, and
// every blob, checking each digest; it returns the top digest.
func (e *env) pull(t *testing.T, img testenv.Image) (string, error) {
	t.Helper()
	r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag)
	if r.err != nil || r.status != 200 {
		return "", fmt.Errorf("manifest %s:%s: %d %v %s", img.Repo, img.Tag, r.status, r.err, r.body)
	}
	top := digest.FromBytes(r.body).String()
	if h := r.header.Get("Docker-Content-Digest"); h != top {
		return "", fmt.Errorf("Docker-Content-Digest %s for body %s", h, top)
	}
	imgs := []testenv.Image{img}
	if len(img.Platforms) > 0 {
		imgs = img.Platforms
	}
	for _, p := range imgs {
		if p.Digest != img.Digest {
			r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+string(p.Digest))
			if r.err != nil || r.status != 200 || digest.FromBytes(r.body) != p.Digest {
				return "", fmt.Errorf("platform manifest %s: %d %v", p.Digest, r.status, r.err)
			}
		}
		for _, b := range p.Blobs() {
			r := e.do(t, "GET", "/v2/"+img.Repo+"/blobs/"+string(b.Digest))
			if r.err != nil || r.status != 200 {
				return "", fmt.Errorf("blob %s: %d %v %s", b.Digest, r.status, r.err, truncate(r.body))
			}
			sum := sha256.Sum256(r.body)
			if "sha256:"+hex.EncodeToString(sum[:]) != string(b.Digest) {
				return "", fmt.Errorf("blob %s: wrong bytes delivered as complete", b.Digest)
			}
		}
	}
	return top, nil
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300])
	}
	return string(b)
}

// errorCode decodes the error envelope's first code.
func errorCode(body []byte) string {
	s := string(body)
	i := strings.Index(s, `"code":"`)
	if i < 0 {
		return ""
	}
	s = s[i+8:]
	return s[:strings.IndexByte(s, '"')]
}

// storeHolds reports whether d is committed in the store.
func (e *env) storeHolds(t *testing.T, d digest.Digest) bool {
	_, err := e.store.Stat(t.Context(), d)
	return err == nil
}

var _ = net.Dial

func memoryBytes(off bool) int64 {
	if off {
		return 0
	}
	return 32 << 20
}
