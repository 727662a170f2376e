package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/regcache/regcache/internal/cache"
	"github.com/regcache/regcache/internal/redact"
)

// cacheBackend is where the cache commands do their work: a stopped
// mirror's data directory (*cache.Cache) or a running mirror's admin
// listener (*remoteCache). Both answer with the same types, printed the
// same way.
type cacheBackend interface {
	List(ctx context.Context, opt cache.ListOptions) (cache.Listing, error)
	Remove(ctx context.Context, req cache.RemoveRequest) (cache.RemoveResult, error)
	Invalidate(ctx context.Context, req cache.InvalidateRequest) (cache.InvalidateResult, error)
	Export(ctx context.Context, w io.Writer, req cache.ExportRequest) (cache.BundleResult, error)
	Import(ctx context.Context, r io.Reader) (cache.BundleResult, error)
	Prune(ctx context.Context, req cache.PruneRequest) (cache.PruneResult, error)
	Verify(ctx context.Context, progress func(cache.VerifyEvent)) (cache.VerifyReport, error)
	Stats(ctx context.Context) (cache.CacheStats, error)
	Close() error
}

var (
	_ cacheBackend = (*cache.Cache)(nil)
	_ cacheBackend = (*remoteCache)(nil)
)

// maxAdminAnswer bounds an answer of the admin listener (a listing of a
// huge cache is large, but not unbounded).
const maxAdminAnswer = 512 << 20

// remoteCache calls a running mirror's cache API (app's cacheapi.go).
type remoteCache struct {
	base  *url.URL
	token string
	http  *http.Client
}

// adminURL reads --admin (of status and cache): an address as
// parseAddress takes it, where a bare address needs its port and ":5001"
// (no host) means loopback, and where a URL may carry a path (an admin
// listener behind a reverse proxy's prefix).
func adminURL(s string) (*url.URL, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("--admin is empty: give the admin listener as host:port (127.0.0.1:5001) or a URL (http://127.0.0.1:5001)")
	}
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil || port == "" {
			return nil, fmt.Errorf("--admin %q: want host:port (127.0.0.1:5001) or a URL (http://127.0.0.1:5001)", redact.URL(s))
		}
		if host == "" {
			s = net.JoinHostPort("127.0.0.1", port)
		}
		return parseAddress("--admin", s)
	}
	var path string
	if u, err := url.Parse(s); err == nil && u.Host != "" {
		path = strings.TrimRight(u.Path, "/")
		u.Path, u.RawPath = "", ""
		s = u.String()
	}
	base, err := parseAddress("--admin", s)
	if err != nil {
		return nil, err
	}
	base.Path = path
	return base, nil
}

func newRemoteCache(admin, token string) (*remoteCache, error) {
	u, err := adminURL(admin)
	if err != nil {
		return nil, err
	}
	return &remoteCache{base: u, token: token, http: &http.Client{}}, nil
}

func (c *remoteCache) Close() error { return nil }

// call sends one request and returns the answer's body (the caller closes
// it) or an error naming the fix.
func (c *remoteCache) call(ctx context.Context, method, path string, query url.Values, body any) (io.ReadCloser, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil || method != http.MethodGet {
		// The admin listener takes state-changing calls as JSON only.
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no regcache admin listener answers at %s (%w): is regcache serve running, and does --admin match its admin_addr?", c.base, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := strings.TrimSpace(string(msg))
	switch resp.StatusCode {
	case http.StatusForbidden:
		if c.token == "" {
			text += " (pass it with --admin-token or REGCACHE_ADMIN_TOKEN)"
		}
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		text = "this admin listener has no cache API: is it a regcache of this version?"
	}
	return nil, fmt.Errorf("the mirror at %s answered %s: %s", c.base, resp.Status, text)
}

func (c *remoteCache) get(ctx context.Context, method, path string, q url.Values, body, out any) error {
	rc, err := c.call(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := json.NewDecoder(io.LimitReader(rc, maxAdminAnswer)).Decode(out); err != nil {
		return fmt.Errorf("read the answer of %s%s: %w", c.base, path, err)
	}
	return nil
}

func (c *remoteCache) List(ctx context.Context, opt cache.ListOptions) (cache.Listing, error) {
	q := url.Values{}
	for k, v := range map[string]string{"upstream": opt.Upstream, "repository": opt.Repository, "sort": opt.Sort} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if opt.Blobs {
		q.Set("blobs", "1")
	}
	if opt.Missing {
		q.Set("missing", "1")
	}
	var l cache.Listing
	return l, c.get(ctx, http.MethodGet, "/cache/ls", q, nil, &l)
}

func (c *remoteCache) Remove(ctx context.Context, req cache.RemoveRequest) (cache.RemoveResult, error) {
	var r cache.RemoveResult
	return r, c.get(ctx, http.MethodPost, "/cache/rm", nil, req, &r)
}

func (c *remoteCache) Invalidate(ctx context.Context, req cache.InvalidateRequest) (cache.InvalidateResult, error) {
	var r cache.InvalidateResult
	return r, c.get(ctx, http.MethodPost, "/cache/invalidate", nil, req, &r)
}

// Export streams the running mirror's bundle into w. Its totals are
// counted here: the answer is the tar itself. A dry run answers the
// counts.
func (c *remoteCache) Export(ctx context.Context, w io.Writer, req cache.ExportRequest) (cache.BundleResult, error) {
	if req.DryRun {
		var r cache.BundleResult
		return r, c.get(ctx, http.MethodPost, "/cache/export", nil, req, &r)
	}
	rc, err := c.call(ctx, http.MethodPost, "/cache/export", nil, req)
	if err != nil {
		return cache.BundleResult{}, err
	}
	defer rc.Close()
	n, err := io.Copy(w, rc)
	if err != nil {
		return cache.BundleResult{}, fmt.Errorf("the bundle from %s was cut short after %d bytes: %w", c.base, n, err)
	}
	return cache.BundleResult{Bytes: n}, nil
}

// Import streams a bundle to the running mirror, which checks and loads
// it.
func (c *remoteCache) Import(ctx context.Context, r io.Reader) (cache.BundleResult, error) {
	u := *c.base
	u.Path += "/cache/import"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), r)
	if err != nil {
		return cache.BundleResult{}, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return cache.BundleResult{}, fmt.Errorf("no regcache admin listener answers at %s (%w)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return cache.BundleResult{}, fmt.Errorf("the mirror at %s answered %s: %s", c.base, resp.Status, strings.TrimSpace(string(msg)))
	}
	var res cache.BundleResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAdminAnswer)).Decode(&res); err != nil {
		return res, fmt.Errorf("read the answer of %s/cache/import: %w", c.base, err)
	}
	return res, nil
}

func (c *remoteCache) Prune(ctx context.Context, req cache.PruneRequest) (cache.PruneResult, error) {
	var r cache.PruneResult
	return r, c.get(ctx, http.MethodPost, "/cache/prune", nil, req, &r)
}

func (c *remoteCache) Stats(ctx context.Context) (cache.CacheStats, error) {
	var s cache.CacheStats
	return s, c.get(ctx, http.MethodGet, "/cache/stats", nil, nil, &s)
}

// Verify reads the verification's lines as the mirror sends them.
func (c *remoteCache) Verify(ctx context.Context, progress func(cache.VerifyEvent)) (cache.VerifyReport, error) {
	rc, err := c.call(ctx, http.MethodPost, "/cache/verify", nil, struct{}{})
	if err != nil {
		return cache.VerifyReport{}, err
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 64<<20) // the report names every damaged digest
	for sc.Scan() {
		var line struct {
			Event  *cache.VerifyEvent  `json:"event"`
			Report *cache.VerifyReport `json:"report"`
			Error  string              `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return cache.VerifyReport{}, fmt.Errorf("read the mirror's verification: %w", err)
		}
		switch {
		case line.Error != "":
			return cache.VerifyReport{}, fmt.Errorf("the mirror's verification failed: %s", line.Error)
		case line.Report != nil:
			return *line.Report, nil
		case line.Event != nil && progress != nil:
			progress(*line.Event)
		}
	}
	if err := sc.Err(); err != nil {
		return cache.VerifyReport{}, fmt.Errorf("read the mirror's verification: %w", err)
	}
	return cache.VerifyReport{}, errors.New("the mirror's verification ended without its report (did the mirror stop?)")
}
