package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Media types a pulling engine accepts, as dockerd sends them.
const (
	acceptImage = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
	acceptIndex = "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json, " + acceptImage
)

// client is a minimal registry client for the read API: bearer-token
// challenges (with optional basic credentials at the token endpoint),
// redirects to a CDN without forwarding the token, and blob bodies hashed
// as they are read so every measured transfer is also verified.
type client struct {
	base       string // http://host:port
	user, pass string
	hc         *http.Client

	mu       sync.Mutex
	tokens   map[string]string        // repository → bearer token
	lastByte map[string]time.Duration // digest → wait for the last byte of its latest download
}

func newClient(base, user, pass string) *client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
		ReadBufferSize:      256 << 10,
	}
	c := &client{base: strings.TrimSuffix(base, "/"), user: user, pass: pass, tokens: map[string]string{}, lastByte: map[string]time.Duration{}}
	c.hc = &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Host != via[0].URL.Host {
			req.Header.Del("Authorization") // a presigned CDN URL refuses a token
		}
		return nil
	}}
	return c
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// get sends a request for path (starting with /v2/) in repository repo,
// answering one bearer challenge if the server sends it.
func (c *client) get(ctx context.Context, method, repo, path string, hdr http.Header) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		c.mu.Lock()
		tok := c.tokens[repo]
		c.mu.Unlock()
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || attempt > 0 {
			return resp, nil
		}
		chal := resp.Header.Get("WWW-Authenticate")
		resp.Body.Close()
		if err := c.login(ctx, repo, chal); err != nil {
			return nil, err
		}
	}
}

// login fetches a token for repo from the realm of a Bearer challenge.
func (c *client) login(ctx context.Context, repo, chal string) error {
	params, ok := parseBearer(chal)
	if !ok {
		return fmt.Errorf("401 without a bearer challenge (%q)", chal)
	}
	u, err := url.Parse(params["realm"])
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("service", params["service"])
	q.Set("scope", "repository:"+repo+":pull")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if c.user != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token endpoint: %s", resp.Status)
	}
	var body struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return fmt.Errorf("token endpoint: %w", err)
	}
	tok := body.Token
	if tok == "" {
		tok = body.AccessToken
	}
	c.mu.Lock()
	c.tokens[repo] = tok
	c.mu.Unlock()
	return nil
}

func parseBearer(h string) (map[string]string, bool) {
	rest, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out, out["realm"] != ""
}

// blob downloads a blob, hashing it as it arrives, and fails unless the
// bytes match dgst (and size, when size >= 0).
func (c *client) blob(ctx context.Context, repo, dgst string, size int64) error {
	return c.fetch(ctx, repo, "/v2/"+repo+"/blobs/"+dgst, dgst, size)
}

// fetch GETs path and checks the body like blob does.
func (c *client) fetch(ctx context.Context, repo, path, dgst string, size int64) error {
	resp, err := c.get(ctx, http.MethodGet, repo, path, nil)
	if err != nil {
		return fmt.Errorf("blob %s: %w", short(dgst), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("blob %s: %s: %s", short(dgst), resp.Status, body)
	}
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var n int64
	var beforeLast time.Time // when all but the last byte had arrived
	for {
		k, err := resp.Body.Read(buf)
		h.Write(buf[:k])
		n += int64(k)
		if beforeLast.IsZero() && size > 1 && n >= size-1 {
			beforeLast = time.Now()
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("blob %s: read after %d bytes: %w", short(dgst), n, err)
		}
	}
	if !beforeLast.IsZero() {
		c.mu.Lock()
		c.lastByte[dgst] = time.Since(beforeLast)
		c.mu.Unlock()
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s: got %d bytes, want %d", short(dgst), n, size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != dgst {
		return fmt.Errorf("blob %s: bytes hash to %s", short(dgst), short(got))
	}
	return nil
}

// manifest GETs a manifest and checks its digest when ref is one.
func (c *client) manifest(ctx context.Context, repo, ref, accept string) ([]byte, string, error) {
	resp, err := c.get(ctx, http.MethodGet, repo, "/v2/"+repo+"/manifests/"+ref, http.Header{"Accept": {accept}})
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s:%s: %w", repo, ref, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("manifest %s:%s: %s: %s", repo, ref, resp.Status, body)
	}
	sum := sha256.Sum256(body)
	d := "sha256:" + hex.EncodeToString(sum[:])
	if strings.HasPrefix(ref, "sha256:") && d != ref {
		return nil, "", fmt.Errorf("manifest %s@%s: bytes hash to %s", repo, short(ref), short(d))
	}
	return body, d, nil
}

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

type manifestBody struct {
	Config    descriptor   `json:"config"`
	Layers    []descriptor `json:"layers"`
	Manifests []descriptor `json:"manifests"`
}

// pullImage pulls repo:tag like an engine: the manifest, then the config
// and layers with at most parallel downloads at a time (dockerd's
// max-concurrent-downloads is 3).
func (c *client) pullImage(ctx context.Context, repo, tag string, parallel int) error {
	raw, _, err := c.manifest(ctx, repo, tag, acceptImage)
	if err != nil {
		return err
	}
	var m manifestBody
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("manifest %s:%s: %w", repo, tag, err)
	}
	blobs := append([]descriptor{m.Config}, m.Layers...)
	sem := make(chan struct{}, parallel)
	errs := make(chan error, len(blobs))
	var wg sync.WaitGroup
	for _, d := range blobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- c.blob(ctx, repo, d.Digest, d.Size)
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

// pullPlatform pulls only the manifests of a multi-arch tag, the part of a
// pull that Docker Hub's rate limit counts: the tag with an Accept header
// that admits indexes, then the linux/amd64 manifest by digest.
func (c *client) pullPlatform(ctx context.Context, repo, tag string) error {
	raw, _, err := c.manifest(ctx, repo, tag, acceptIndex)
	if err != nil {
		return err
	}
	var idx manifestBody
	if err := json.Unmarshal(raw, &idx); err != nil {
		return fmt.Errorf("index %s:%s: %w", repo, tag, err)
	}
	for _, d := range idx.Manifests {
		if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			_, _, err := c.manifest(ctx, repo, d.Digest, acceptImage)
			return err
		}
	}
	return fmt.Errorf("index %s:%s has no linux/amd64 manifest", repo, tag)
}

// burst runs n concurrent downloads of one blob and returns the wall time
// from the first request to the last byte.
func (c *client) burst(ctx context.Context, n int, repo, dgst string, size int64) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.blob(ctx, repo, dgst, size)
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errs)
	return took, errors.Join(collect(errs)...)
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}
