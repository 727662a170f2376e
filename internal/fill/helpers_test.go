package fill_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/upstream"
)

// content is a deterministic pseudo-random blob generated from a seed, in
// independent 64 KiB blocks so any offset can be produced without keeping
// the blob in memory.
type content struct {
	seed   uint64
	size   int64
	digest digest.Digest
	data   []byte // the bytes, when materialized (benchmarks)
}

const genBlock = 64 << 10

func newContent(seed uint64, size int64) *content {
	c := &content{seed: seed, size: size}
	h := sha256.New()
	if _, err := io.Copy(h, c.open(0)); err != nil {
		panic(err)
	}
	c.digest = digest.NewDigest(digest.SHA256, h)
	return c
}

// big is the 128 MiB blob of the many-readers test, generated (hashed) once
// per test binary.
var big = sync.OnceValue(func() *content { return newContent(0xb16, 128<<20) })

func (c *content) block(i int64, buf []byte) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], c.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	r := rand.NewChaCha8(key)
	n := min(genBlock, c.size-i*genBlock)
	buf = buf[:n]
	_, _ = r.Read(buf)
	return buf
}

// open streams the content from off to its end.
func (c *content) open(off int64) io.Reader {
	if c.data != nil {
		return bytes.NewReader(c.data[off:])
	}
	return &contentReader{c: c, off: off, buf: make([]byte, genBlock), bi: -1}
}

type contentReader struct {
	c   *content
	off int64
	buf []byte
	cur []byte
	bi  int64
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.off >= r.c.size {
		return 0, io.EOF
	}
	if bi := r.off / genBlock; bi != r.bi {
		r.cur, r.bi = r.c.block(bi, r.buf), bi
	}
	n := copy(p, r.cur[r.off%genBlock:])
	r.off += int64(n)
	return n, nil
}

// bytesAt returns n bytes (fewer at the end) from off.
func (c *content) bytesAt(off int64, n int) []byte {
	b, _ := io.ReadAll(io.LimitReader(c.open(off), int64(n)))
	return b
}

// fault is what the fake upstream does to one GET.
type fault struct {
	status        int           // answer with this error status
	truncateAfter int64         // end the body (and the connection) after this many bytes
	resetAfter    int64         // reset the TCP connection after this many bytes
	corruptAt     int64         // flip the byte at this absolute offset when corrupt
	corrupt       bool          // whether corruptAt applies
	ignoreRange   bool          // answer 200 from byte 0 to a Range request
	sizeDelta     int64         // announce the blob this much larger than it is
	rate          int64         // bytes per second, 0 = unthrottled
	gateAt        int64         // pause after this many absolute bytes until gate is closed
	gate          chan struct{} // see gateAt
}

// script chooses the fault of the attempt-th GET (1-based) of a digest.
type script func(attempt int) fault

func healthy(int) fault { return fault{} }

// firstOnly applies f to the first GET only.
func firstOnly(f fault) script {
	return func(attempt int) fault {
		if attempt == 1 {
			return f
		}
		return fault{}
	}
}

type upstreamBlob struct {
	c      *content
	script script
	gets   int
	ranges []string
	sent   int64 // body bytes written to clients
	// inflight GETs now, and the most at once
	inflight, maxInflight int
}

// traffic returns the body bytes the digest's GETs sent, and the most GETs
// of it that ran at once.
func (u *fakeUpstream) traffic(d digest.Digest) (sent int64, maxInflight int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.blobs[d]
	return b.sent, b.maxInflight
}

// fakeUpstream is a scripted registry serving blobs by digest: it counts
// GETs per digest, records their Range headers, supports Range and injects
// faults.
type fakeUpstream struct {
	mu    sync.Mutex
	blobs map[digest.Digest]*upstreamBlob
}

func (u *fakeUpstream) add(c *content, s script) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.blobs[c.digest] = &upstreamBlob{c: c, script: s}
}

func (u *fakeUpstream) setScript(d digest.Digest, s script) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.blobs[d].script = s
}

// gets returns how many GETs the digest saw and their Range headers.
func (u *fakeUpstream) gets(d digest.Digest) (int, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.blobs[d]
	return b.gets, append([]string(nil), b.ranges...)
}

func writeRegistryError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": http.StatusText(status)}}})
}

func (u *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, ref, ok := strings.Cut(r.URL.Path, "/blobs/")
	if r.Method != http.MethodGet || !ok {
		writeRegistryError(w, http.StatusNotFound, "NAME_UNKNOWN")
		return
	}
	u.mu.Lock()
	b := u.blobs[digest.Digest(ref)]
	if b == nil {
		u.mu.Unlock()
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN")
		return
	}
	b.gets++
	b.ranges = append(b.ranges, r.Header.Get("Range"))
	b.inflight++
	b.maxInflight = max(b.maxInflight, b.inflight)
	f, c := b.script(b.gets), b.c
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		b.inflight--
		u.mu.Unlock()
	}()

	switch {
	case f.status == http.StatusNotFound:
		writeRegistryError(w, f.status, "BLOB_UNKNOWN")
		return
	case f.status != 0:
		writeRegistryError(w, f.status, "UNKNOWN")
		return
	}
	total := c.size + f.sizeDelta
	start, end, closed := int64(0), total, false // [start, end) of the announced blob
	if rng := r.Header.Get("Range"); rng != "" && !f.ignoreRange {
		v, ok := strings.CutPrefix(rng, "bytes=")
		a, b, ok2 := strings.Cut(v, "-")
		n, err := strconv.ParseInt(a, 10, 64)
		if !ok || !ok2 || err != nil || n < 0 || n >= c.size {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		if b != "" {
			last, err := strconv.ParseInt(b, 10, 64)
			if err != nil || last < n {
				http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
				return
			}
			end, closed = min(last+1, total), true
		}
		start = n
	}
	status := http.StatusOK
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/octet-stream")
	hdr.Set("Docker-Content-Digest", c.digest.String())
	hdr.Set("Content-Length", strconv.FormatInt(end-start, 10))
	if start > 0 || closed {
		status = http.StatusPartialContent
		hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end-1, total))
	}

	var out io.Writer = w
	flush := func() { http.NewResponseController(w).Flush() }
	var conn net.Conn
	if f.resetAfter > 0 {
		// Take the connection over so it can be reset (RST), not closed.
		cn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer cn.Close()
		conn = cn
		fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\n", status, http.StatusText(status))
		_ = hdr.Write(brw)
		brw.WriteString("\r\n")
		out = brw
		flush = func() { _ = brw.Flush() }
	} else {
		for k, v := range hdr {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
	}

	limit := min(c.size, end) - start
	if f.truncateAfter > 0 {
		limit = min(limit, f.truncateAfter)
	}
	if f.resetAfter > 0 {
		limit = min(limit, f.resetAfter)
	}
	ctx := r.Context()
	src := c.open(start)
	buf := make([]byte, 32<<10)
	began := time.Now()
	var sent int64
	for sent < limit {
		n := int64(len(buf))
		n = min(n, limit-sent)
		if f.gate != nil && start+sent < f.gateAt {
			n = min(n, f.gateAt-start-sent)
		}
		if _, err := io.ReadFull(src, buf[:n]); err != nil {
			panic(err)
		}
		if pos := f.corruptAt - start - sent; f.corrupt && pos >= 0 && pos < n {
			buf[pos] ^= 0xff
		}
		k, err := out.Write(buf[:n])
		u.mu.Lock()
		b.sent += int64(k)
		u.mu.Unlock()
		if err != nil {
			return
		}
		sent += n
		if f.rate > 0 {
			due := began.Add(time.Duration(float64(sent) / float64(f.rate) * float64(time.Second)))
			flush()
			if !sleepCtx(ctx, time.Until(due)) {
				return
			}
		}
		if f.gate != nil && start+sent == f.gateAt {
			flush()
			select {
			case <-f.gate:
			case <-ctx.Done():
				return
			}
		}
	}
	flush()
	if conn != nil {
		resetConn(conn)
	}
	// Returning with fewer bytes than Content-Length makes the server
	// close the connection: the client sees a truncated body.
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// resetConn waits until the peer has acknowledged everything sent, so the
// cut happens at a known offset, then closes with SO_LINGER 0 (RST).
func resetConn(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for unsent(tc) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_ = tc.SetLinger(0)
	_ = tc.Close()
}

// env is one test's world: a fake upstream behind httptest, a real
// upstream.Client, a disk store and a Manager.
type env struct {
	t      testing.TB
	up     *fakeUpstream
	client *upstream.Client
	store  *disk.Store
	m      *fill.Manager
	root   string
}

type envConfig struct {
	store func(*disk.Store) blobstore.Store // wraps the disk store
	opts  []fill.Option
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	up := &fakeUpstream{blobs: map[digest.Digest]*upstreamBlob{}}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	tr := upstream.DefaultTransport()
	t.Cleanup(tr.CloseIdleConnections)
	client, err := upstream.New("test.local", srv.URL, auth.Credentials{},
		upstream.WithTransport(tr), upstream.WithRetry(2, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ds, err := disk.New(root)
	if err != nil {
		t.Fatal(err)
	}
	var store blobstore.Store = ds
	if cfg.store != nil {
		store = cfg.store(ds)
	}
	log := slog.New(slog.DiscardHandler) // benchmarks would print every fill
	if _, ok := t.(*testing.T); ok {
		log = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := append([]fill.Option{fill.WithResume(4, 5*time.Millisecond), fill.WithLogger(log)}, cfg.opts...)
	m := fill.New(store, opts...)
	t.Cleanup(m.Close)
	return &env{t: t, up: up, client: client, store: ds, m: m, root: root}
}

func (e *env) src(d digest.Digest) fill.Source {
	return func(ctx context.Context, off int64) (*upstream.Blob, error) {
		return e.client.BlobGet(ctx, "library/test", d, off)
	}
}

func (e *env) open(c *content, size int64) *fill.Reader {
	e.t.Helper()
	r, err := e.m.Open(c.digest, size, e.src(c.digest))
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { r.Close() })
	return r
}

// tmpFiles lists what is left in the store's temp directory.
func (e *env) tmpFiles() []string {
	e.t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.root, "tmp"))
	if err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	return names
}

// committed reports whether the store holds d, checking its bytes.
func (e *env) committed(c *content) bool {
	e.t.Helper()
	size, err := e.store.Stat(context.Background(), c.digest)
	if errors.Is(err, blobstore.ErrNotFound) {
		return false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	if size != c.size {
		e.t.Fatalf("committed %d bytes, want %d", size, c.size)
	}
	if err := e.store.Verify(context.Background(), c.digest); err != nil {
		e.t.Fatalf("committed blob: %v", err)
	}
	return true
}

// waitIdle waits until the manager runs no fill.
func (e *env) waitIdle(ctx context.Context) {
	e.t.Helper()
	for e.m.Active() > 0 {
		if !sleepCtx(ctx, 2*time.Millisecond) {
			e.t.Fatalf("fills still active: %v", ctx.Err())
		}
	}
}

// drain reads r from its offset to EOF in 64 KiB reads, hashing as it
// goes. It returns the byte count and the first error other than EOF.
func drain(ctx context.Context, r *fill.Reader, w io.Writer) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := r.ReadContext(ctx, buf)
		if k > 0 {
			w.Write(buf[:k])
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// compareWriter checks written bytes against content from an offset
// without buffering.
type compareWriter struct {
	want io.Reader
	buf  []byte
	pos  int64
	bad  int64 // first mismatching position, -1 if none
}

func newCompareWriter(c *content, off int64) *compareWriter {
	return &compareWriter{want: c.open(off), buf: make([]byte, 64<<10), pos: off, bad: -1}
}

func (w *compareWriter) Write(p []byte) (int, error) {
	for done := 0; done < len(p); {
		n := min(len(p)-done, len(w.buf))
		k, _ := io.ReadFull(w.want, w.buf[:n])
		if w.bad < 0 && !bytes.Equal(w.buf[:k], p[done:done+n]) {
			w.bad = w.pos
		}
		w.pos += int64(n)
		done += n
	}
	return len(p), nil
}

// fullStore is a disk store whose writers run out of space after limit
// bytes, as a full disk does (a short write and ENOSPC).
type fullStore struct {
	*disk.Store
	limit int64
}

func (s fullStore) Create(ctx context.Context, d digest.Digest) (blobstore.Writer, error) {
	w, err := s.Store.Create(ctx, d)
	if err != nil {
		return nil, err
	}
	return &fullWriter{Writer: w, limit: s.limit}, nil
}

type fullWriter struct {
	blobstore.Writer
	limit int64
}

func (w *fullWriter) Write(p []byte) (int, error) {
	room := w.limit - w.Written()
	if int64(len(p)) <= room {
		return w.Writer.Write(p)
	}
	n, _ := w.Writer.Write(p[:max(room, 0)])
	return n, &os.PathError{Op: "write", Path: "tmp", Err: syscall.ENOSPC}
}

// eventuallyCommitted waits a little for the commit: readers are released
// once the bytes are verified, and the fsync and rename follow.
func (e *env) eventuallyCommitted(c *content) bool {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !e.committed(c) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
