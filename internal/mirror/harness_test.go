package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// The content service's tests run in a testing/synctest bubble: its clock
// (freshness, negative answers, the budget's window) is the bubble's, and
// its upstreams are go-containerregistry's registry served over an
// in-memory network, so a goroutine waiting on an idle connection is
// durably blocked and the clock moves on (a loopback socket would hold it).

// pipeNet is that network: a dial of host:port is a net.Pipe to the server
// listening as host.
type pipeNet struct {
	mu        sync.Mutex
	listeners map[string]*pipeListener
}

// pipeListener is one host's side of a pipeNet.
type pipeListener struct {
	host  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.host + ":80") }

// serve starts an HTTP server as host on the network until the test ends.
func (n *pipeNet) serve(t *testing.T, host string, h http.Handler) {
	l := &pipeListener{host: host, conns: make(chan net.Conn), done: make(chan struct{})}
	n.mu.Lock()
	if n.listeners == nil {
		n.listeners = map[string]*pipeListener{}
	}
	n.listeners[host] = l
	n.mu.Unlock()
	srv := &http.Server{Handler: h}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-served })
}

func (n *pipeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	l := n.listeners[host]
	n.mu.Unlock()
	if l == nil {
		return nil, &net.OpError{Op: "dial", Net: "pipe", Err: errors.New("connection refused")}
	}
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
	case <-ctx.Done():
	}
	client.Close()
	server.Close()
	return nil, &net.OpError{Op: "dial", Net: "pipe", Err: errors.New("connection refused")}
}

// transport is a client of the network, its idle connections closed when
// the test ends.
func (n *pipeNet) transport(t *testing.T) *http.Transport {
	tr := &http.Transport{DialContext: n.dial}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// fakeUpstream is a registry (go-containerregistry's) behind a script: a
// status every manifest or blob request answers instead, Docker Hub's
// rate-limit headers on manifest GETs, bytes served in place of a digest's
// (a careless or hostile upstream), and which repository holds which
// digest (the in-memory registry keeps blobs for all its repositories, a
// real one answers a blob only under a repository that holds it). It
// records the pulls it is asked.
type fakeUpstream struct {
	host string
	reg  http.Handler

	mu               sync.Mutex
	fail             map[string]int             // "manifests" or "blobs" → status
	limit, remaining int                        // ratelimit-* on manifest GETs (limit 0: none)
	window           int                        // the limit's window, seconds
	retryAfter       int                        // on a 429
	holds            map[string]map[string]bool // repository → digests
	lies             map[string][]byte          // digest → the bytes served instead, under any repository
	asked            []pull
}

// pull is one request a fakeUpstream was asked.
type pull struct {
	method, kind, repo, ref string
}

func newFakeUpstream(host string) *fakeUpstream {
	return &fakeUpstream{host: host, reg: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), fail: map[string]int{}, window: 21600, retryAfter: 60,
		holds: map[string]map[string]bool{}, lies: map[string][]byte{}}
}

// parseV2 splits /v2/<repo>/<kind>/<ref>.
func parseV2(p string) (repo, kind, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", "", false
	}
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(rest, k); i > 0 && !strings.Contains(rest[i+len(k):], "/") {
			return rest[:i], strings.Trim(k, "/"), rest[i+len(k):], true
		}
	}
	return "", "", "", false
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	repo, kind, ref, ok := parseV2(r.URL.Path)
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) || strings.Contains(r.UserAgent(), pusherAgent) {
		f.reg.ServeHTTP(w, r) // /v2/, the test's pushes
		return
	}
	f.mu.Lock()
	f.asked = append(f.asked, pull{r.Method, kind, repo, ref})
	status := f.fail[kind]
	lie, lies := f.lies[ref]
	held := f.holds[repo][ref] || !strings.Contains(ref, ":") // a tag is the registry's to answer
	if kind == "manifests" && f.limit > 0 && status == 0 {
		if r.Method == http.MethodGet {
			if f.remaining <= 0 {
				status = http.StatusTooManyRequests
			} else {
				f.remaining--
			}
		}
		w.Header().Set("ratelimit-limit", fmt.Sprintf("%d;w=%d", f.limit, f.window))
		w.Header().Set("ratelimit-remaining", fmt.Sprintf("%d;w=%d", f.remaining, f.window))
	}
	retryAfter := f.retryAfter
	f.mu.Unlock()
	switch {
	case status != 0:
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
		}
		writeUpstreamError(w, status)
	case lies && kind == "blobs":
		w.Header().Set("Content-Length", fmt.Sprint(len(lie)))
		w.Header().Set("Docker-Content-Digest", ref)
		if r.Method == http.MethodGet {
			w.Write(lie)
		}
	case !held:
		writeUpstreamError(w, http.StatusNotFound)
	default:
		f.reg.ServeHTTP(w, r)
	}
}

func writeUpstreamError(w http.ResponseWriter, status int) {
	code := map[int]string{http.StatusUnauthorized: "UNAUTHORIZED", http.StatusForbidden: "DENIED",
		http.StatusNotFound: "BLOB_UNKNOWN", http.StatusTooManyRequests: "TOOMANYREQUESTS"}[status]
	if code == "" {
		code = "UNAVAILABLE"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"scripted"}]}`, code)
}

// setFail makes every request of kind ("manifests", "blobs") answer
// status; 0 serves again.
func (f *fakeUpstream) setFail(kind string, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[kind] = status
}

// setRateLimit sends ratelimit-limit and ratelimit-remaining with each
// manifest request; each GET spends one, and none left is a 429.
func (f *fakeUpstream) setRateLimit(limit, remaining int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.limit, f.remaining = limit, remaining
}

// lie serves body as the blob d (HEAD: 200 with its length), under any
// repository.
func (f *fakeUpstream) lie(d digest.Digest, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lies[d.String()] = body
}

// count is how many requests matched: method and kind always, repo and
// ref when not "".
func (f *fakeUpstream) count(method, kind, repo, ref string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, p := range f.asked {
		if p.method == method && p.kind == kind && (repo == "" || p.repo == repo) && (ref == "" || p.ref == ref) {
			n++
		}
	}
	return n
}

// reset forgets what was asked.
func (f *fakeUpstream) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = nil
}

// pusherAgent marks the test's own pushes, which the script lets through
// and does not count.
const pusherAgent = "regcache-test-push"

// image is what was pushed: its manifest's digest, media type and the
// blobs it references (config first).
type image struct {
	repo, tag string
	digest    digest.Digest
	mediaType string
	blobs     []digest.Digest
}

// push uploads a random image (seed picks its bytes) as repo:tag and
// records that repo holds it.
func (f *fakeUpstream) push(t *testing.T, n *pipeNet, repo, tag string, seed int64) image {
	t.Helper()
	return f.pushImage(t, n, repo, tag, randomImage(t, seed))
}

// randomImage is an image of two small layers; the same seed, the same
// image.
func randomImage(t *testing.T, seed int64) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2, random.WithSource(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushImage uploads img as repo:tag and records that repo holds it.
func (f *fakeUpstream) pushImage(t *testing.T, n *pipeNet, repo, tag string, img v1.Image) image {
	t.Helper()
	ref, err := name.ParseReference(f.host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(n.transport(t)), remote.WithContext(t.Context()), remote.WithUserAgent(pusherAgent)); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	out := image{repo: repo, tag: tag, digest: digest.Digest(d.String()), mediaType: string(mt)}
	cfg, _ := img.ConfigName()
	out.blobs = append(out.blobs, digest.Digest(cfg.String()))
	layers, _ := img.Layers()
	for _, l := range layers {
		ld, _ := l.Digest()
		out.blobs = append(out.blobs, digest.Digest(ld.String()))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds[repo] == nil {
		f.holds[repo] = map[string]bool{}
	}
	for _, b := range append([]digest.Digest{out.digest}, out.blobs...) {
		f.holds[repo][b.String()] = true
	}
	return out
}

// upstreamSpec is one upstream of a test's content service.
type upstreamSpec struct {
	name        string
	fallback    []string
	trustedTags bool
}

// env is a content service over a disk store and a bbolt index in a
// temporary directory, in front of fake upstreams on an in-memory network.
type env struct {
	t     *testing.T
	net   *pipeNet
	ups   map[string]*fakeUpstream
	svc   *Service
	index *cacheindex.Index
	fills *fill.Manager
}

// newEnv starts the upstreams of specs (the first is the default) and the
// service; call it inside a synctest bubble.
func newEnv(t *testing.T, specs []upstreamSpec, opts ...Option) *env {
	t.Helper()
	e := &env{t: t, net: &pipeNet{}, ups: map[string]*fakeUpstream{}}
	var ups []*Upstream
	for _, sp := range specs {
		f := newFakeUpstream(sp.name)
		e.net.serve(t, sp.name, f)
		e.ups[sp.name] = f
		c, err := upstream.New(sp.name, "http://"+sp.name, auth.Credentials{},
			upstream.WithTransport(e.net.transport(t)), upstream.WithRetry(1, time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ups = append(ups, &Upstream{Name: sp.name, Client: c, Fallback: sp.fallback, TrustedTags: sp.trustedTags})
	}
	dir := t.TempDir()
	store, err := disk.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if e.index, err = cacheindex.Open(filepath.Join(dir, "index.db"), time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.index.Close() })
	e.fills = fill.New(store)
	t.Cleanup(e.fills.Close)
	e.svc = New(store, e.index, e.fills, ups, append([]Option{WithPrefetch(false, 1)}, opts...)...)
	t.Cleanup(e.svc.Close)
	return e
}

// manifest asks for repo:ref of the upstream up (a tag, or a digest).
func (e *env) manifest(t *testing.T, req Request, ref string) (*Manifest, Outcome, error) {
	t.Helper()
	r, err := oci.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if req.Accept == nil {
		req.Accept = oci.ManifestMediaTypes
	}
	return e.svc.Manifest(t.Context(), req, r)
}

// blob asks for d under req's repository and reads it whole; it returns
// the bytes when the service served the blob.
func (e *env) blob(t *testing.T, req Request, d digest.Digest) ([]byte, Outcome, error) {
	t.Helper()
	b, out, err := e.svc.Blob(t.Context(), req, d)
	if err != nil {
		return nil, out, err
	}
	defer b.Close()
	var got bytes.Buffer
	if err := b.Send(t.Context(), &got, 0, -1); err != nil {
		return nil, out, err
	}
	if digest.FromBytes(got.Bytes()) != d {
		t.Fatalf("blob %s served other bytes", d)
	}
	return got.Bytes(), out, nil
}

// settle waits until no fill runs (their commits are in the index).
func (e *env) settle() {
	for e.fills.Active() > 0 {
		time.Sleep(time.Millisecond)
	}
}

// code is the spec's error code of the service's answer err ("" for
// none: no error, or one that is not the spec's).
func code(err error) oci.ErrorCode {
	var we *oci.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return ""
}
