package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// HubService is the service name the Hub's challenge and token endpoint use,
// the same as Docker Hub's.
const HubService = "registry.docker.io"

// AllBlobs is the digest key for SetFault that applies to every blob without
// a fault of its own.
const AllBlobs = "*"

// Kind classifies a request the Hub received, for counters and faults.
type Kind string

// Request kinds. KindBlob is a blob request on the registry host (answered
// with a redirect); KindCDN is the byte transfer on the CDN host.
const (
	KindPing     Kind = "ping"
	KindManifest Kind = "manifest"
	KindBlob     Kind = "blob"
	KindUpload   Kind = "upload"
	KindTags     Kind = "tags"
	KindCatalog  Kind = "catalog"
	KindToken    Kind = "token"
	KindCDN      Kind = "cdn"
	KindOther    Kind = "other"
)

// Request is one entry of the Hub's request log.
type Request struct {
	Server  string // "registry", "cdn" or "token"
	Method  string
	Path    string
	Kind    Kind
	Repo    string
	Ref     string // tag or digest; the digest for blobs and CDN requests
	Range   string // the Range request header
	Auth    bool   // whether an Authorization header was sent
	Status  int
	Started time.Time
}

// Hub is an in-process Docker Hub stand-in: a go-containerregistry registry
// behind Docker Hub's token flow, rate-limit headers, blob redirects to a
// separate CDN host, and switchable faults. All methods are safe to call
// from any goroutine while requests are in flight.
type Hub struct {
	// URL is the registry's base URL, http://127.0.0.1:port.
	URL string
	// Host is URL's host:port, the registry name to give clients.
	Host string
	// TokenURL is the token endpoint (the realm), http://localhost:port/token.
	TokenURL string
	// CDNURL is the base URL blob GETs are redirected to.
	CDNURL string
	// AdminHost is an unauthenticated, uncounted, fault-free host:port
	// over the same content, for seeding and inspecting.
	AdminHost string

	t       testing.TB
	blobs   *diskBlobs
	backend http.Handler
	tokens  *tokenService
	opaque  *opaqueTokens
	reg     *server
	cdn     *server
	tok     *server

	mu         sync.Mutex
	authOn     bool
	redirect   bool
	limit      int
	remaining  int
	retryAfter time.Duration
	fail       map[Kind]int
	faults     map[string]*faultState
	counts     map[countKey]int
	blobBytes  map[string]int64
	log        []Request
}

type countKey struct {
	method string
	kind   Kind
	ref    string
}

// HubOption configures NewHub.
type HubOption func(*hubOptions)

type hubOptions struct {
	referrers bool
}

// WithReferrersAPI makes the hub answer OCI 1.1's referrers API
// (/v2/<name>/referrers/<digest>), as registries that have it do; without
// it the hub answers 404 there, as Distribution 2.8 does, and clients keep
// the referrers tag schema's index instead.
func WithReferrersAPI() HubOption { return func(o *hubOptions) { o.referrers = true } }

// NewHub starts a Hub with auth on, blob redirects on, a rate limit of
// 100 manifest GETs, no faults and no credentials (anonymous tokens can
// read every repository not marked private). Everything stops at cleanup.
func NewHub(t testing.TB, opts ...HubOption) *Hub {
	t.Helper()
	var o hubOptions
	for _, opt := range opts {
		opt(&o)
	}
	h := &Hub{
		t:          t,
		blobs:      &diskBlobs{dir: t.TempDir()},
		authOn:     true,
		redirect:   true,
		limit:      100,
		remaining:  100,
		retryAfter: 60 * time.Second,
		fail:       map[Kind]int{},
		faults:     map[string]*faultState{},
		counts:     map[countKey]int{},
		blobBytes:  map[string]int64{},
	}
	h.backend = registry.New(registry.WithBlobHandler(h.blobs), registry.WithReferrersSupport(o.referrers), registry.Logger(log.New(io.Discard, "", 0)))
	h.opaque = &opaqueTokens{grants: map[string]opaqueGrant{}}
	h.tokens = newTokenService(HubService, h.opaque.issue)
	h.tokens.observe = func(r *http.Request, status int, started time.Time) {
		h.record(Request{Server: "token", Method: r.Method, Path: r.URL.Path, Kind: KindToken,
			Auth: r.Header.Get("Authorization") != "", Status: status, Started: started})
	}
	h.tokens.failStatus = func() int { return h.failStatus(KindToken) }

	h.tok = startServer(t, h.tokens)
	h.TokenURL = "http://localhost:" + h.tok.port() + "/token"
	h.cdn = startServer(t, http.HandlerFunc(h.serveCDN))
	h.CDNURL = "http://" + h.cdn.addr
	h.reg = startServer(t, http.HandlerFunc(h.serveRegistry))
	h.Host = h.reg.addr
	h.URL = "http://" + h.Host
	admin := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rt := parseRoute(r.URL.Path); rt.kind == KindUpload {
			h.blobs.serveUpload(w, r, rt, h.backend)
			return
		}
		h.backend.ServeHTTP(w, r)
	}))
	h.AdminHost = admin.addr
	return h
}

// Seed pushes the test images of Seed into the Hub through AdminHost, so
// seeding touches no counter, fault or rate limit.
func (h *Hub) Seed(t testing.TB, opts ...SeedOption) Images {
	t.Helper()
	return Seed(t, h.AdminHost, authn.Anonymous, opts...)
}

// SetAuth turns the bearer-token requirement on the registry host on or off.
func (h *Hub) SetAuth(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.authOn = on
}

// SetRedirect chooses whether blob GETs are redirected to the CDN host
// (the default) or served by the registry host itself, faults included.
func (h *Hub) SetRedirect(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.redirect = on
}

// SetCredentials makes the token endpoint accept user/password with basic
// auth (or the OAuth2 password grant). Wrong credentials get 401; with no
// credentials set, any basic credentials are ignored as if anonymous.
func (h *Hub) SetCredentials(user, password string) { h.tokens.setCredentials(user, password) }

// SetPrivate marks repo (e.g. "library/app") private: anonymous tokens carry
// no access to it, so the registry answers 401.
func (h *Hub) SetPrivate(repo string, private bool) { h.tokens.setPrivate(repo, private) }

// SetTokenTTL sets expires_in of newly issued tokens (default 300s); the
// registry rejects tokens older than that.
func (h *Hub) SetTokenTTL(d time.Duration) { h.tokens.setTTL(d) }

// TokenRequests returns how many requests the token endpoint received.
func (h *Hub) TokenRequests() int { return h.Count("", KindToken) }

// SetRateLimit sets the ratelimit-limit and ratelimit-remaining values.
// Each manifest GET decrements remaining; at zero, manifest GETs get 429.
func (h *Hub) SetRateLimit(limit, remaining int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.limit, h.remaining = limit, remaining
}

// RateLimitRemaining returns the current ratelimit-remaining value.
func (h *Hub) RateLimitRemaining() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.remaining
}

// SetRetryAfter sets the Retry-After sent with every 429 (default 60s).
func (h *Hub) SetRetryAfter(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.retryAfter = d
}

// Fail makes every request of kind k answer status (after the token check,
// so clients authenticate normally first). A 429 carries Retry-After and a
// TOOMANYREQUESTS body. KindToken makes the token endpoint fail. Status 0
// restores normal service.
func (h *Hub) Fail(k Kind, status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if status == 0 {
		delete(h.fail, k)
		return
	}
	h.fail[k] = status
}

func (h *Hub) failStatus(k Kind) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fail[k]
}

// Down closes the registry, CDN and token listeners and every open
// connection, so new connections are refused. AdminHost stays up.
func (h *Hub) Down() {
	h.reg.down()
	h.cdn.down()
	h.tok.down()
}

// Up reopens what Down closed, on the same ports.
func (h *Hub) Up() {
	h.t.Helper()
	for _, s := range []*server{h.reg, h.cdn, h.tok} {
		if err := s.up(); err != nil {
			h.t.Fatalf("hub up: %v", err)
		}
	}
}

// Count returns how many requests of kind k with method (any method when
// empty) the Hub received since the last ResetCounters.
func (h *Hub) Count(method string, k Kind) int { return h.CountRef(method, k, "") }

// CountRef is Count restricted to one reference: a tag or digest for
// manifests, a digest for blobs and CDN transfers, a repository for tags.
// An empty ref counts every reference.
func (h *Hub) CountRef(method string, k Kind, ref string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[countKey{method, k, ref}]
}

// BlobBytes returns how many body bytes of blob dgst were sent to clients,
// over the CDN and the registry host together.
func (h *Hub) BlobBytes(dgst string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.blobBytes[dgst]
}

// Requests returns a copy of the request log, oldest first.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.log...)
}

// ResetCounters clears the counters, byte counts and request log. The rate
// limit, faults and switches are left as they are.
func (h *Hub) ResetCounters() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.counts = map[countKey]int{}
	h.blobBytes = map[string]int64{}
	h.log = nil
}

func (h *Hub) record(r Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, r)
	for _, m := range []string{"", r.Method} {
		h.counts[countKey{m, r.Kind, ""}]++
		if r.Ref != "" {
			h.counts[countKey{m, r.Kind, r.Ref}]++
		}
	}
}

func (h *Hub) addBlobBytes(dgst string, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.blobBytes[dgst] += n
}

// route is a registry request path parsed into what the Hub needs.
type route struct {
	kind Kind
	repo string
	ref  string
}

func parseRoute(p string) route {
	if p == "/v2/" || p == "/v2" {
		return route{kind: KindPing}
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return route{kind: KindOther}
	}
	if rest == "_catalog" {
		return route{kind: KindCatalog}
	}
	elems := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	n := len(elems)
	switch {
	case n >= 3 && elems[n-2] == "manifests":
		return route{KindManifest, strings.Join(elems[:n-2], "/"), elems[n-1]}
	case n >= 3 && elems[n-2] == "tags" && elems[n-1] == "list":
		repo := strings.Join(elems[:n-2], "/")
		return route{KindTags, repo, repo}
	case n >= 3 && elems[n-2] == "blobs" && elems[n-1] == "uploads":
		return route{KindUpload, strings.Join(elems[:n-2], "/"), ""}
	case n >= 4 && elems[n-3] == "blobs" && elems[n-2] == "uploads":
		return route{KindUpload, strings.Join(elems[:n-3], "/"), elems[n-1]}
	case n >= 3 && elems[n-2] == "blobs":
		return route{KindBlob, strings.Join(elems[:n-2], "/"), elems[n-1]}
	case n >= 3 && elems[n-2] == "referrers":
		return route{KindOther, strings.Join(elems[:n-2], "/"), elems[n-1]}
	}
	return route{kind: KindOther}
}

func (h *Hub) serveRegistry(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.URL.Path)
	started := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		h.record(Request{Server: "registry", Method: r.Method, Path: r.URL.Path, Kind: rt.kind,
			Repo: rt.repo, Ref: rt.ref, Range: r.Header.Get("Range"),
			Auth: r.Header.Get("Authorization") != "", Status: sw.status(), Started: started})
	}()
	w = sw
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")

	h.mu.Lock()
	authOn, redirect := h.authOn, h.redirect
	h.mu.Unlock()
	if authOn && !h.authorize(w, r, rt) {
		return
	}
	if status := h.failStatus(rt.kind); status != 0 {
		h.writeFailure(w, status)
		return
	}
	switch {
	case rt.kind == KindManifest:
		if !h.rateLimit(w, r) {
			return
		}
	case rt.kind == KindUpload:
		h.blobs.serveUpload(w, r, rt, h.backend)
		return
	case rt.kind == KindBlob && r.Method == http.MethodGet:
		if _, err := h.blobs.path(rt.ref); err == nil {
			if redirect {
				loc := h.CDNURL + "/blobs/" + rt.ref + "?repo=" + url.QueryEscape(rt.repo)
				http.Redirect(w, r, loc, http.StatusTemporaryRedirect)
				return
			}
			h.serveBlob(w, r, rt.ref)
			return
		}
	}
	h.backend.ServeHTTP(w, r)
}

// authorize checks the bearer token against the action the request needs,
// and writes Docker Hub's challenge when it falls short.
func (h *Hub) authorize(w http.ResponseWriter, r *http.Request, rt route) bool {
	tok, hasToken := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	action := "pull"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		action = "push"
	}
	var scope string
	switch rt.kind {
	case KindPing:
		if hasToken && h.opaque.valid(tok) {
			return true
		}
	case KindCatalog:
		scope = "registry:catalog:*"
		if hasToken && h.opaque.allowed(tok, "registry", "catalog", "*") {
			return true
		}
	default:
		scope = "repository:" + rt.repo + ":" + action
		if action == "push" {
			scope = "repository:" + rt.repo + ":pull,push"
		}
		if hasToken && h.opaque.allowed(tok, "repository", rt.repo, action) {
			return true
		}
	}
	chal := fmt.Sprintf(`Bearer realm=%q,service=%q`, h.TokenURL, HubService)
	if scope != "" {
		chal += fmt.Sprintf(`,scope=%q`, scope)
	}
	if hasToken && h.opaque.valid(tok) {
		chal += `,error="insufficient_scope"`
	}
	w.Header().Set("WWW-Authenticate", chal)
	writeRegistryError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

// rateLimit adds Docker Hub's rate-limit headers and, for GETs, spends one
// pull or answers 429 when none are left.
func (h *Hub) rateLimit(w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	exhausted := false
	if r.Method == http.MethodGet {
		exhausted = h.remaining <= 0
		if !exhausted {
			h.remaining--
		}
	}
	limit, remaining := h.limit, h.remaining
	h.mu.Unlock()
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	w.Header().Set("ratelimit-limit", fmt.Sprintf("%d;w=21600", limit))
	w.Header().Set("ratelimit-remaining", fmt.Sprintf("%d;w=21600", remaining))
	w.Header().Set("docker-ratelimit-source", ip)
	if exhausted {
		h.writeFailure(w, http.StatusTooManyRequests)
		return false
	}
	return true
}

func (h *Hub) writeFailure(w http.ResponseWriter, status int) {
	switch {
	case status == http.StatusTooManyRequests:
		h.mu.Lock()
		ra := h.retryAfter
		h.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(int(ra.Seconds())))
		writeRegistryError(w, status, "TOOMANYREQUESTS",
			"You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit")
	case status == http.StatusUnauthorized:
		writeRegistryError(w, status, "UNAUTHORIZED", "authentication required")
	case status == http.StatusForbidden:
		writeRegistryError(w, status, "DENIED", "requested access to the resource is denied")
	case status == http.StatusNotFound:
		writeRegistryError(w, status, "NAME_UNKNOWN", "repository not found")
	default:
		writeRegistryError(w, status, "UNAVAILABLE", "service unavailable")
	}
}

func writeRegistryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":null}]}`+"\n", code, msg)
}

func (h *Hub) serveCDN(w http.ResponseWriter, r *http.Request) {
	dgst, _ := strings.CutPrefix(r.URL.Path, "/blobs/")
	started := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		h.record(Request{Server: "cdn", Method: r.Method, Path: r.URL.Path, Kind: KindCDN,
			Repo: r.URL.Query().Get("repo"), Ref: dgst, Range: r.Header.Get("Range"),
			Auth: r.Header.Get("Authorization") != "", Status: sw.status(), Started: started})
	}()
	w = sw
	if r.Header.Get("Authorization") != "" {
		// Like S3 and Cloudflare behind Docker Hub: a presigned URL plus a
		// forwarded registry token is an ambiguous request and refused.
		http.Error(w, "Authorization header not allowed on presigned URL", http.StatusForbidden)
		return
	}
	if status := h.failStatus(KindCDN); status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h.serveBlob(w, r, dgst)
}

// serveBlob writes blob dgst with Range support, applying its faults.
func (h *Hub) serveBlob(w http.ResponseWriter, r *http.Request, dgst string) {
	p, err := h.blobs.path(dgst)
	if err != nil {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	f, err := os.Open(p)
	if err != nil {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeRegistryError(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	var fl fault
	if r.Method == http.MethodGet {
		fl = h.takeFault(dgst)
	}
	if fl.delay > 0 {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(fl.delay):
		}
	}
	if fl.endless {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", dgst)
		w.WriteHeader(http.StatusOK)
		n, _ := io.Copy(w, f)
		h.addBlobBytes(dgst, n)
		zeros := make([]byte, 64<<10)
		for sent := int64(0); sent < 1<<30 && r.Context().Err() == nil; sent += int64(len(zeros)) {
			if _, err := w.Write(zeros); err != nil {
				return
			}
			h.addBlobBytes(dgst, int64(len(zeros)))
		}
		return
	}
	var content io.ReadSeeker = f
	if fl.corrupt {
		content = &corruptReader{rs: f, at: fi.Size() / 2}
	}
	if fl.ignoreRange {
		r.Header.Del("Range")
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", dgst)
	w.Header().Set("Etag", `"`+dgst+`"`)
	fw := &faultWriter{ResponseWriter: w, ctx: r.Context(), fault: fl, count: func(n int) { h.addBlobBytes(dgst, int64(n)) }, start: time.Now()}
	http.ServeContent(fw, r, "", time.Time{}, content)
}

// Fault is one kind of misbehaviour for SetFault; pass several to combine.
type Fault func(*fault)

type fault struct {
	truncateAfter int64 // -1: off
	resetAfter    int64 // -1: off
	corrupt       bool
	bytesPerSec   int64
	ignoreRange   bool
	delay         time.Duration
	endless       bool
	times         int // 0: every request
}

type faultState struct {
	f    fault
	left int // requests left when f.times > 0
}

// Truncate closes the connection cleanly after n body bytes of a response.
func Truncate(n int64) Fault { return func(f *fault) { f.truncateAfter = n } }

// Reset resets the connection (TCP RST) after n body bytes of a response.
func Reset(n int64) Fault { return func(f *fault) { f.resetAfter = n } }

// Corrupt flips the byte in the middle of the blob whenever a response
// covers it, so the bytes no longer match the digest.
func Corrupt() Fault { return func(f *fault) { f.corrupt = true } }

// Endless sends the blob without a Content-Length and then zeros without
// end (up to 1 GiB, or until the client leaves): a body no size bounds.
func Endless() Fault { return func(f *fault) { f.endless = true } }

// Throttle limits each response to about bytesPerSec.
func Throttle(bytesPerSec int64) Fault { return func(f *fault) { f.bytesPerSec = bytesPerSec } }

// IgnoreRange answers Range requests with 200 and the whole blob.
func IgnoreRange() Fault { return func(f *fault) { f.ignoreRange = true } }

// Delay waits d before sending response headers.
func Delay(d time.Duration) Fault { return func(f *fault) { f.delay = d } }

// Times limits the faults to the next n GETs of the blob, after which it is
// served normally; Truncate(n) with Times(1) fails only the first attempt.
func Times(n int) Fault { return func(f *fault) { f.times = n } }

// SetFault replaces the faults of blob dgst (a digest string, or AllBlobs)
// with faults. With no faults it clears them. Faults apply to blob GETs on
// whichever host serves the bytes (the CDN, or the registry with
// SetRedirect(false)).
func (h *Hub) SetFault(dgst string, faults ...Fault) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(faults) == 0 {
		delete(h.faults, dgst)
		return
	}
	f := fault{truncateAfter: -1, resetAfter: -1}
	for _, o := range faults {
		o(&f)
	}
	h.faults[dgst] = &faultState{f: f, left: f.times}
}

// ClearFaults removes every blob fault.
func (h *Hub) ClearFaults() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.faults = map[string]*faultState{}
}

func (h *Hub) takeFault(dgst string) fault {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := dgst
	fs := h.faults[key]
	if fs == nil {
		key = AllBlobs
		fs = h.faults[key]
	}
	if fs == nil {
		return fault{truncateAfter: -1, resetAfter: -1}
	}
	if fs.f.times > 0 {
		fs.left--
		if fs.left <= 0 {
			delete(h.faults, key)
		}
	}
	return fs.f
}

// faultWriter applies truncation, resets and throttling to a response body.
type faultWriter struct {
	http.ResponseWriter
	ctx     context.Context
	fault   fault
	count   func(int)
	start   time.Time
	written int64
	dead    bool
}

var errFaultInjected = errors.New("testenv: connection cut by injected fault")

func (fw *faultWriter) Write(p []byte) (int, error) {
	if fw.dead {
		return 0, errFaultInjected
	}
	cut, reset := int64(-1), false
	if fw.fault.truncateAfter >= 0 {
		cut = fw.fault.truncateAfter
	}
	if fw.fault.resetAfter >= 0 && (cut < 0 || fw.fault.resetAfter < cut) {
		cut, reset = fw.fault.resetAfter, true
	}
	total := 0
	for len(p) > 0 {
		chunk := p
		if cut >= 0 && fw.written+int64(len(chunk)) > cut {
			chunk = chunk[:cut-fw.written]
		}
		if bps := fw.fault.bytesPerSec; bps > 0 {
			if step := max(bps/20, 1); int64(len(chunk)) > step {
				chunk = chunk[:step]
			}
		}
		if len(chunk) > 0 {
			n, err := fw.ResponseWriter.Write(chunk)
			fw.written += int64(n)
			total += n
			fw.count(n)
			if err != nil {
				return total, err
			}
			p = p[n:]
		}
		if cut >= 0 && fw.written >= cut {
			fw.kill(reset)
			return total, errFaultInjected
		}
		if bps := fw.fault.bytesPerSec; bps > 0 {
			http.NewResponseController(fw.ResponseWriter).Flush()
			due := fw.start.Add(time.Duration(float64(fw.written) / float64(bps) * float64(time.Second)))
			select {
			case <-fw.ctx.Done():
				return total, fw.ctx.Err()
			case <-time.After(time.Until(due)):
			}
		}
	}
	return total, nil
}

// kill sends what was written so far and then drops the connection: a clean
// close (FIN) for truncation, or SO_LINGER 0 for a reset (RST).
func (fw *faultWriter) kill(reset bool) {
	fw.dead = true
	rc := http.NewResponseController(fw.ResponseWriter)
	rc.Flush()
	conn, _, err := rc.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		tc.SetLinger(0)
	}
	conn.Close()
}

// Unwrap lets http.ResponseController reach the real writer.
func (fw *faultWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }

// corruptReader flips the byte at offset at whenever it is read.
type corruptReader struct {
	rs  io.ReadSeeker
	pos int64
	at  int64
}

func (c *corruptReader) Read(p []byte) (int, error) {
	n, err := c.rs.Read(p)
	if c.at >= c.pos && c.at < c.pos+int64(n) {
		p[c.at-c.pos] ^= 0xff
	}
	c.pos += int64(n)
	return n, err
}

func (c *corruptReader) Seek(off int64, whence int) (int64, error) {
	pos, err := c.rs.Seek(off, whence)
	c.pos = pos
	return pos, err
}

// statusWriter remembers the status code for the request log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// diskBlobs is a go-containerregistry BlobHandler over plain files that
// verifies digests on Put, so Stat can trust the file name (the package's
// own disk handler re-hashes the blob on every Stat).
type diskBlobs struct{ dir string }

func (d *diskBlobs) path(dgst string) (string, error) {
	h, err := v1.NewHash(dgst)
	if err != nil {
		return "", registry.ErrNotFound
	}
	p := filepath.Join(d.dir, h.Algorithm, h.Hex)
	if _, err := os.Stat(p); err != nil {
		return "", registry.ErrNotFound
	}
	return p, nil
}

func (d *diskBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(filepath.Join(d.dir, h.Algorithm, h.Hex))
	if err != nil {
		return 0, registry.ErrNotFound
	}
	return fi.Size(), nil
}

func (d *diskBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(d.dir, h.Algorithm, h.Hex))
	if err != nil {
		return nil, registry.ErrNotFound
	}
	return f, nil
}

func (d *diskBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	defer rc.Close()
	tmp, err := os.CreateTemp(d.dir, "upload-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	got, _, err := v1.SHA256(io.TeeReader(rc, tmp))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got != h {
		return fmt.Errorf("blob digest %s does not match %s", got, h)
	}
	if err := os.MkdirAll(filepath.Join(d.dir, h.Algorithm), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(d.dir, h.Algorithm, h.Hex))
}

// serveUpload streams blob uploads (POST, PATCH, PUT) to disk, because
// go-containerregistry's registry collects them in memory; cross-repository
// mounts go to backend.
func (d *diskBlobs) serveUpload(w http.ResponseWriter, r *http.Request, rt route, backend http.Handler) {
	q := r.URL.Query()
	if r.Method == http.MethodPost && q.Get("mount") != "" {
		backend.ServeHTTP(w, r)
		return
	}
	id := rt.ref
	if r.Method == http.MethodPost {
		id = randomHex(16)
	}
	if id == "" || strings.ContainsAny(id, "/.") {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
		return
	}
	tmp := filepath.Join(d.dir, "upload-"+id)
	flags := os.O_WRONLY | os.O_APPEND
	if r.Method == http.MethodPost {
		flags |= os.O_CREATE | os.O_EXCL
	}
	switch r.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut:
	default:
		writeRegistryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
		return
	}
	f, err := os.OpenFile(tmp, flags, 0o644)
	if err != nil {
		writeRegistryError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "upload unknown")
		return
	}
	_, err = io.Copy(f, r.Body)
	size, _ := f.Seek(0, io.SeekCurrent)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		writeRegistryError(w, http.StatusInternalServerError, "BLOB_UPLOAD_INVALID", err.Error())
		return
	}
	location := "/v2/" + rt.repo + "/blobs/uploads/" + id
	dgst := q.Get("digest")
	if r.Method == http.MethodPatch || dgst == "" {
		w.Header().Set("Location", location)
		w.Header().Set("Docker-Upload-UUID", id)
		w.Header().Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if err := d.commit(tmp, dgst); err != nil {
		os.Remove(tmp)
		writeRegistryError(w, http.StatusBadRequest, "DIGEST_INVALID", err.Error())
		return
	}
	w.Header().Set("Location", "/v2/"+rt.repo+"/blobs/"+dgst)
	w.Header().Set("Docker-Content-Digest", dgst)
	w.WriteHeader(http.StatusCreated)
}

// commit checks that the file at tmp has digest dgst and moves it into place.
func (d *diskBlobs) commit(tmp, dgst string) error {
	h, err := v1.NewHash(dgst)
	if err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	got, _, err := v1.SHA256(f)
	f.Close()
	if err != nil {
		return err
	}
	if got != h {
		return fmt.Errorf("blob digest %s does not match %s", got, h)
	}
	if err := os.MkdirAll(filepath.Join(d.dir, h.Algorithm), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(d.dir, h.Algorithm, h.Hex))
}

// server is an HTTP server on a fixed 127.0.0.1 port that can be closed and
// reopened on the same port, and waits for its handlers at cleanup.
type server struct {
	addr    string
	handler http.Handler
	wg      sync.WaitGroup

	mu  sync.Mutex
	srv *http.Server
}

func startServer(t testing.TB, h http.Handler) *server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	s := &server{addr: l.Addr().String()}
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.wg.Add(1)
		defer s.wg.Done()
		h.ServeHTTP(w, r)
	})
	s.serve(l)
	t.Cleanup(func() {
		s.down()
		s.wg.Wait()
	})
	return s
}

func (s *server) port() string {
	_, p, _ := net.SplitHostPort(s.addr)
	return p
}

func (s *server) serve(l net.Listener) {
	srv := &http.Server{Handler: s.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go srv.Serve(l)
}

func (s *server) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *server) up() error {
	s.mu.Lock()
	running := s.srv != nil
	s.mu.Unlock()
	if running {
		return nil
	}
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("relisten on %s: %w", s.addr, err)
	}
	s.serve(l)
	return nil
}

// tokenService is a Docker-Hub-style token endpoint (GET with optional
// basic auth, and the OAuth2 POST form containerd and dockerd use), shared
// by the Hub (opaque tokens) and Distribution (signed JWTs).
type tokenService struct {
	service    string
	issue      tokenIssuer
	observe    func(r *http.Request, status int, started time.Time)
	failStatus func() int

	mu       sync.Mutex
	user     string
	password string
	private  map[string]bool
	ttl      time.Duration
	requests int
}

// tokenIssuer mints a token for subject (empty for anonymous) granting
// access for ttl.
type tokenIssuer func(subject string, access []resourceActions, ttl time.Duration) (string, error)

// resourceActions is one entry of a token's access claim.
type resourceActions struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func newTokenService(service string, issuer tokenIssuer) *tokenService {
	return &tokenService{service: service, issue: issuer, private: map[string]bool{}, ttl: 300 * time.Second}
}

func (s *tokenService) setCredentials(user, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.password = user, password
}

func (s *tokenService) setPrivate(repo string, private bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if private {
		s.private[repo] = true
	} else {
		delete(s.private, repo)
	}
}

func (s *tokenService) setTTL(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ttl = d
}

func (s *tokenService) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *tokenService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	started := time.Now()
	defer func() {
		if s.observe != nil {
			s.observe(r, sw.status(), started)
		}
	}()
	w = sw
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	if s.failStatus != nil {
		if status := s.failStatus(); status != 0 {
			http.Error(w, http.StatusText(status), status)
			return
		}
	}

	var user, pass string
	var hasCreds bool
	var scopes []string
	switch r.Method {
	case http.MethodGet:
		user, pass, hasCreds = r.BasicAuth()
		for _, sc := range r.URL.Query()["scope"] {
			scopes = append(scopes, strings.Fields(sc)...)
		}
	case http.MethodPost:
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch r.PostForm.Get("grant_type") {
		case "password":
			user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
		case "refresh_token":
			// Refresh tokens are the password itself; good enough for a fake.
			user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("refresh_token"), true
		default:
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		scopes = strings.Fields(r.PostForm.Get("scope"))
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	s.mu.Lock()
	wantUser, wantPass, ttl := s.user, s.password, s.ttl
	s.mu.Unlock()
	subject := ""
	if hasCreds && wantUser != "" {
		if user != wantUser || pass != wantPass {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"details":"incorrect username or password"}`+"\n")
			return
		}
		subject = user
	}

	access := s.grant(subject, scopes)
	tok, err := s.issue(subject, access, ttl)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body := map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(ttl.Seconds()),
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	}
	if r.Method == http.MethodPost && subject != "" {
		body["refresh_token"] = pass
		body["scope"] = strings.Join(scopes, " ")
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}

// grant decides access like Docker Hub: a known user gets what they ask
// for; anonymous gets pull on repositories that are not private.
func (s *tokenService) grant(subject string, scopes []string) []resourceActions {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []resourceActions
	for _, sc := range scopes {
		typ, rest, ok1 := strings.Cut(sc, ":")
		i := strings.LastIndex(rest, ":")
		if !ok1 || i < 0 {
			continue
		}
		name, actions := rest[:i], strings.Split(rest[i+1:], ",")
		ra := resourceActions{Type: typ, Name: name, Actions: []string{}}
		for _, a := range actions {
			switch {
			case subject != "":
				ra.Actions = append(ra.Actions, a)
			case typ == "repository" && a == "pull" && !s.private[name]:
				ra.Actions = append(ra.Actions, a)
			}
		}
		out = append(out, ra)
	}
	return out
}

// opaqueTokens issues random tokens and remembers what each grants.
type opaqueTokens struct {
	mu     sync.Mutex
	grants map[string]opaqueGrant
}

type opaqueGrant struct {
	access  []resourceActions
	expires time.Time
}

func (o *opaqueTokens) issue(_ string, access []resourceActions, ttl time.Duration) (string, error) {
	b := make([]byte, 24)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.grants[tok] = opaqueGrant{access: access, expires: time.Now().Add(ttl)}
	return tok, nil
}

func (o *opaqueTokens) lookup(tok string) (opaqueGrant, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	g, ok := o.grants[tok]
	if !ok || time.Now().After(g.expires) {
		return opaqueGrant{}, false
	}
	return g, true
}

func (o *opaqueTokens) valid(tok string) bool {
	_, ok := o.lookup(tok)
	return ok
}

func (o *opaqueTokens) allowed(tok, typ, name, action string) bool {
	g, ok := o.lookup(tok)
	if !ok {
		return false
	}
	for _, ra := range g.access {
		if ra.Type != typ || ra.Name != name {
			continue
		}
		for _, a := range ra.Actions {
			if a == action || a == "*" {
				return true
			}
		}
	}
	return false
}
