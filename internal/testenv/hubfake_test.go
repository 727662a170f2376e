package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// hubToken fetches a token for scope from the hub's token endpoint.
func hubToken(t *testing.T, h *Hub, scope string, user, pass string) (string, int) {
	t.Helper()
	u := h.TokenURL + "?service=" + HubService + "&scope=" + url.QueryEscape(scope)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode == http.StatusOK && (body.Token == "" || body.Token != body.AccessToken || body.ExpiresIn <= 0 || body.IssuedAt == "") {
		t.Errorf("token response %+v", body)
	}
	return body.Token, resp.StatusCode
}

// hubGet sends one request without following redirects.
func hubGet(t *testing.T, method, u, token string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestHubPullWithGGCR(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	imgs := h.Seed(t)
	ref, err := name.ParseReference(h.Host+"/"+imgs.Single.Repo+":latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("remote.Image: %v", err)
	}
	if d, _ := img.Digest(); d.String() != string(imgs.Single.Digest) {
		t.Errorf("digest %s, want %s", d, imgs.Single.Digest)
	}
	layers, _ := img.Layers()
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc) // ggcr verifies the digest at EOF
	rc.Close()
	if err != nil {
		t.Fatalf("read layer through the CDN: %v", err)
	}

	layer := string(imgs.Single.Layers[0].Digest)
	if got := h.CountRef(http.MethodGet, KindCDN, layer); got != 1 {
		t.Errorf("CDN GETs of the layer = %d, want 1", got)
	}
	if got := h.BlobBytes(layer); got != n {
		t.Errorf("BlobBytes = %d, want %d", got, n)
	}
	if h.TokenRequests() == 0 || h.Count(http.MethodGet, KindManifest) != 1 {
		t.Errorf("token requests %d, manifest GETs %d", h.TokenRequests(), h.Count(http.MethodGet, KindManifest))
	}
	if got := h.RateLimitRemaining(); got != 99 {
		t.Errorf("remaining = %d after one manifest GET, want 99", got)
	}
	for _, r := range h.Requests() {
		if r.Server == "cdn" && r.Auth {
			t.Errorf("ggcr sent Authorization to the CDN: %+v", r)
		}
	}
	h.ResetCounters()
	if len(h.Requests()) != 0 || h.Count("", KindCDN) != 0 || h.BlobBytes(layer) != 0 {
		t.Error("ResetCounters left counts behind")
	}
}

func TestHubChallengeAndHeaders(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	imgs := h.Seed(t)
	manifestURL := h.URL + "/v2/" + imgs.Single.Repo + "/manifests/latest"

	resp := hubGet(t, http.MethodGet, h.URL+"/v2/", "")
	want := fmt.Sprintf(`Bearer realm="http://localhost:%s/token",service="registry.docker.io"`, h.tok.port())
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
		t.Errorf("/v2/: %d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
	resp = hubGet(t, http.MethodGet, manifestURL, "")
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(ch, `scope="repository:library/single:pull"`) {
		t.Errorf("manifest without token: %d %q", resp.StatusCode, ch)
	}

	tok, _ := hubToken(t, h, "repository:library/single:pull", "", "")
	resp = hubGet(t, http.MethodHead, manifestURL, tok, "Accept", imgs.Single.MediaType)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ratelimit-remaining") != "100;w=21600" {
		t.Errorf("HEAD: %d remaining %q, want 200 and no decrement", resp.StatusCode, resp.Header.Get("ratelimit-remaining"))
	}
	resp = hubGet(t, http.MethodGet, manifestURL, tok, "Accept", imgs.Single.MediaType)
	if resp.StatusCode != http.StatusOK ||
		resp.Header.Get("ratelimit-limit") != "100;w=21600" ||
		resp.Header.Get("ratelimit-remaining") != "99;w=21600" ||
		resp.Header.Get("docker-ratelimit-source") != "127.0.0.1" ||
		resp.Header.Get("Docker-Content-Digest") != string(imgs.Single.Digest) {
		t.Errorf("GET: %d %v", resp.StatusCode, resp.Header)
	}

	// A token for one repository does not open another.
	resp = hubGet(t, http.MethodGet, h.URL+"/v2/"+imgs.OCIIndex.Repo+"/manifests/latest", tok)
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, "insufficient_scope") {
		t.Errorf("other repository: %d %q", resp.StatusCode, ch)
	}

	// Blob GETs redirect to the CDN, which refuses Authorization.
	layer := string(imgs.Single.Layers[0].Digest)
	resp = hubGet(t, http.MethodGet, h.URL+"/v2/"+imgs.Single.Repo+"/blobs/"+layer, tok)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, h.CDNURL+"/") {
		t.Fatalf("blob GET: %d %q, want 307 to the CDN", resp.StatusCode, loc)
	}
	if resp := hubGet(t, http.MethodGet, loc, tok); resp.StatusCode != http.StatusForbidden {
		t.Errorf("CDN with Authorization: %d, want 403", resp.StatusCode)
	}
	resp = hubGet(t, http.MethodGet, loc, "", "Range", "bytes=10-19")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || len(body) != 10 {
		t.Errorf("CDN Range: %d, %d bytes", resp.StatusCode, len(body))
	}
}

func TestHubPrivateAndCredentials(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	imgs := h.Seed(t)
	h.SetPrivate(imgs.Single.Repo, true)
	h.SetCredentials("alice", "s3cret")
	ref := h.Host + "/" + imgs.Single.Repo + ":latest"

	if _, err := crane.Digest(ref, crane.Insecure, crane.WithContext(t.Context())); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("anonymous pull of a private repository: %v, want 401", err)
	}
	if _, err := crane.Digest(ref, crane.Insecure, crane.WithContext(t.Context()),
		crane.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"})); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("wrong password: %v, want 401", err)
	}
	got, err := crane.Digest(ref, crane.Insecure, crane.WithContext(t.Context()),
		crane.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))
	if err != nil || got != string(imgs.Single.Digest) {
		t.Errorf("authenticated pull: %s, %v", got, err)
	}
	if _, code := hubToken(t, h, "repository:x:pull", "alice", "nope"); code != http.StatusUnauthorized {
		t.Errorf("token with a wrong password: %d, want 401", code)
	}
	// The OAuth2 password grant (containerd, dockerd) works too.
	resp, err := http.PostForm(h.TokenURL, url.Values{"grant_type": {"password"}, "username": {"alice"},
		"password": {"s3cret"}, "service": {HubService}, "scope": {"repository:" + imgs.Single.Repo + ":pull"}, "client_id": {"test"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("OAuth2 password grant: %d", resp.StatusCode)
	}
}

func TestHubFailures(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	imgs := h.Seed(t)
	manifestURL := h.URL + "/v2/" + imgs.Single.Repo + "/manifests/latest"
	tok, _ := hubToken(t, h, "repository:library/single:pull", "", "")

	h.SetRateLimit(100, 1)
	if resp := hubGet(t, http.MethodGet, manifestURL, tok); resp.StatusCode != http.StatusOK {
		t.Errorf("last allowed pull: %d", resp.StatusCode)
	}
	h.SetRetryAfter(7 * time.Second)
	resp := hubGet(t, http.MethodGet, manifestURL, tok)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" ||
		!bytes.Contains(body, []byte("TOOMANYREQUESTS")) || resp.Header.Get("ratelimit-remaining") != "0;w=21600" {
		t.Errorf("exhausted: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp := hubGet(t, http.MethodHead, manifestURL, tok); resp.StatusCode != http.StatusOK {
		t.Errorf("HEAD while exhausted: %d, want 200 (HEADs are free)", resp.StatusCode)
	}
	h.SetRateLimit(100, 100)

	h.Fail(KindManifest, http.StatusTooManyRequests)
	if resp := hubGet(t, http.MethodGet, manifestURL, tok); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("forced 429: %d", resp.StatusCode)
	}
	h.Fail(KindManifest, http.StatusServiceUnavailable)
	if resp := hubGet(t, http.MethodGet, manifestURL, tok); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("forced 503: %d", resp.StatusCode)
	}
	h.Fail(KindManifest, 0)
	h.Fail(KindToken, http.StatusInternalServerError)
	if _, code := hubToken(t, h, "repository:library/single:pull", "", ""); code != http.StatusInternalServerError {
		t.Errorf("failing token endpoint: %d", code)
	}
	h.Fail(KindToken, 0)
	if resp := hubGet(t, http.MethodGet, manifestURL, tok); resp.StatusCode != http.StatusOK {
		t.Errorf("after clearing: %d", resp.StatusCode)
	}

	h.SetTokenTTL(time.Second)
	short, _ := hubToken(t, h, "repository:library/single:pull", "", "")
	h.SetTokenTTL(300 * time.Second)
	time.Sleep(1100 * time.Millisecond)
	if resp := hubGet(t, http.MethodGet, manifestURL, short); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", resp.StatusCode)
	}
}

func TestHubDownUp(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	imgs := h.Seed(t)
	h.Down()
	_, err := crane.Digest(imgs.Single.ByDigest(h.Host), crane.Insecure, crane.WithContext(t.Context()))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("while down: %v, want connection refused", err)
	}
	h.Up()
	if _, err := crane.Digest(imgs.Single.ByDigest(h.Host), crane.Insecure, crane.WithContext(t.Context())); err != nil {
		t.Errorf("after Up: %v", err)
	}
}

func TestHubFaults(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	h.SetAuth(false)
	imgs := h.Seed(t, WithTenLayerImage(10*64<<10))
	layer := imgs.TenLayer.Layers[0]
	clean := fetchAll(t, h.CDNURL+"/blobs/"+string(layer.Digest), "")
	if int64(len(clean)) != layer.Size || fmt.Sprintf("sha256:%x", sha256.Sum256(clean)) != string(layer.Digest) {
		t.Fatalf("clean fetch: %d bytes", len(clean))
	}

	tests := []struct {
		name     string
		faults   []Fault
		rng      string
		redirect bool
		check    func(t *testing.T, resp *http.Response, body, full []byte, err error, took time.Duration)
	}{
		{name: "truncate", faults: []Fault{Truncate(1000)}, check: func(t *testing.T, resp *http.Response, body, full []byte, err error, _ time.Duration) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 1000 || resp.ContentLength != int64(len(full)) {
				t.Errorf("got %d bytes, err %v, Content-Length %d", len(body), err, resp.ContentLength)
			}
		}},
		{name: "reset", faults: []Fault{Reset(2000)}, check: func(t *testing.T, _ *http.Response, body, full []byte, err error, _ time.Duration) {
			if !errors.Is(err, syscall.ECONNRESET) || len(body) > 2000 {
				t.Errorf("got %d bytes, err %v; want a reset", len(body), err)
			}
		}},
		{name: "corrupt", faults: []Fault{Corrupt()}, check: func(t *testing.T, _ *http.Response, body, full []byte, err error, _ time.Duration) {
			if err != nil || len(body) != len(full) || bytes.Equal(body, full) || body[len(body)/2] != full[len(full)/2]^0xff {
				t.Errorf("err %v; want the middle byte flipped", err)
			}
		}},
		{name: "corrupt outside range", faults: []Fault{Corrupt()}, rng: "bytes=0-99", check: func(t *testing.T, resp *http.Response, body, full []byte, err error, _ time.Duration) {
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[:100]) {
				t.Errorf("%d: range before the flipped byte changed", resp.StatusCode)
			}
		}},
		{name: "throttle", faults: []Fault{Throttle(256 << 10)}, check: func(t *testing.T, _ *http.Response, body, full []byte, err error, took time.Duration) {
			want := time.Duration(float64(len(full)) / float64(256<<10) * float64(time.Second))
			if err != nil || !bytes.Equal(body, full) || took < want*8/10 {
				t.Errorf("err %v, took %v, want about %v", err, took, want)
			}
		}},
		{name: "ignore range", faults: []Fault{IgnoreRange()}, rng: "bytes=100-", check: func(t *testing.T, resp *http.Response, body, full []byte, err error, _ time.Duration) {
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, full) {
				t.Errorf("%d with %d bytes, want 200 with the whole blob", resp.StatusCode, len(body))
			}
		}},
		{name: "range honoured", rng: "bytes=100-", check: func(t *testing.T, resp *http.Response, body, full []byte, err error, _ time.Duration) {
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, full[100:]) {
				t.Errorf("%d with %d bytes", resp.StatusCode, len(body))
			}
		}},
		{name: "delay", faults: []Fault{Delay(300 * time.Millisecond)}, check: func(t *testing.T, _ *http.Response, body, full []byte, err error, took time.Duration) {
			if err != nil || took < 300*time.Millisecond {
				t.Errorf("err %v, took %v", err, took)
			}
		}},
		{name: "truncate after the redirect", faults: []Fault{Truncate(10)}, redirect: true, check: func(t *testing.T, _ *http.Response, body, full []byte, err error, _ time.Duration) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 10 {
				t.Errorf("got %d bytes, err %v", len(body), err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case gets its own blob, so the cases can run in parallel.
			t.Parallel()
			dgst := string(imgs.TenLayer.Layers[i].Digest)
			want := fetchAll(t, h.CDNURL+"/blobs/"+dgst, "")
			h.SetFault(dgst, tt.faults...)
			u := h.CDNURL + "/blobs/" + dgst
			if tt.redirect {
				u = h.URL + "/v2/" + imgs.TenLayer.Repo + "/blobs/" + dgst
			}
			start := time.Now()
			resp, body, err := fetch(t, u, tt.rng)
			tt.check(t, resp, body, want, err, time.Since(start))
		})
	}

	t.Run("times", func(t *testing.T) {
		dgst := string(imgs.Single.Layers[0].Digest)
		h.SetFault(dgst, Truncate(5), Times(1))
		if _, body, err := fetch(t, h.CDNURL+"/blobs/"+dgst, ""); err == nil || len(body) != 5 {
			t.Errorf("first attempt: %d bytes, %v", len(body), err)
		}
		if _, body, err := fetch(t, h.CDNURL+"/blobs/"+dgst, ""); err != nil || int64(len(body)) != imgs.Single.Layers[0].Size {
			t.Errorf("second attempt: %d bytes, %v", len(body), err)
		}
	})
	t.Run("registry host serves blobs itself", func(t *testing.T) {
		dgst := string(imgs.Single.Layers[0].Digest)
		h.SetRedirect(false)
		defer h.SetRedirect(true)
		h.SetFault(dgst, Truncate(7))
		defer h.SetFault(dgst)
		h.ResetCounters()
		if _, body, err := fetch(t, h.URL+"/v2/"+imgs.Single.Repo+"/blobs/"+dgst, ""); err == nil || len(body) != 7 {
			t.Errorf("%d bytes, %v", len(body), err)
		}
		if h.Count("", KindCDN) != 0 || h.BlobBytes(dgst) != 7 {
			t.Errorf("CDN requests %d, bytes %d", h.Count("", KindCDN), h.BlobBytes(dgst))
		}
	})
	t.Run("all blobs", func(t *testing.T) {
		dgst := string(imgs.Single.Config.Digest)
		h.SetFault(AllBlobs, Truncate(3))
		defer h.ClearFaults()
		if _, body, err := fetch(t, h.CDNURL+"/blobs/"+dgst, ""); err == nil || len(body) != 3 {
			t.Errorf("%d bytes, %v", len(body), err)
		}
	})
}

func fetch(t *testing.T, u, rng string) (*http.Response, []byte, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func fetchAll(t *testing.T, u, rng string) []byte {
	t.Helper()
	_, body, err := fetch(t, u, rng)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return body
}

// Distribution in proxy mode is a real, independent client of the Hub's
// token flow and CDN redirects.
func TestHubAsDistributionUpstream(t *testing.T) {
	t.Parallel()
	h := NewHub(t)
	imgs := h.Seed(t)
	h.SetCredentials("bob", "hunter2")
	h.SetPrivate(imgs.ManifestList.Repo, true)
	proxy := NewDistribution(t, DistributionOptions{ProxyRemoteURL: h.URL, ProxyUsername: "bob", ProxyPassword: "hunter2"})

	img, err := crane.Pull(proxy.Host+"/"+imgs.ManifestList.Repo+":latest", crane.Insecure, crane.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull through Distribution: %v", err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer through Distribution: %v", err)
		}
	}
	if h.TokenRequests() == 0 || h.Count(http.MethodGet, KindCDN) == 0 {
		t.Errorf("token requests %d, CDN GETs %d", h.TokenRequests(), h.Count(http.MethodGet, KindCDN))
	}
}
