package upstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/oci"
)

// breakers are a client's circuit breakers, one per scope.
type breakers struct {
	threshold int
	interval  time.Duration

	mu     sync.Mutex
	scopes map[string]*breaker
	cdns   int
}

func newBreakers() *breakers {
	return &breakers{threshold: 5, interval: time.Second, scopes: map[string]*breaker{}}
}

func (bs *breakers) get(scope string) (string, *breaker) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.scopes[scope]
	if ok {
		return scope, b
	}
	if strings.HasPrefix(scope, scopeCDN) {
		if bs.cdns >= maxCDNScopes {
			scope = scopeOtherCDNs
			if b, ok := bs.scopes[scope]; ok {
				return scope, b
			}
		} else {
			bs.cdns++
		}
	}
	b = &breaker{threshold: bs.threshold, interval: bs.interval}
	bs.scopes[scope] = b
	return scope, b
}

// states lists every scope's breaker, sorted by scope.
func (bs *breakers) states() []BreakerState {
	bs.mu.Lock()
	names := make([]string, 0, len(bs.scopes))
	for s := range bs.scopes {
		names = append(names, s)
	}
	bs.mu.Unlock()
	slices.Sort(names)
	out := make([]BreakerState, 0, len(names))
	for _, s := range names {
		_, b := bs.get(s)
		out = append(out, b.state(s))
	}
	return out
}

// scopedTransport is the client's innermost transport: every request that
// goes out (to the registry, its token realm, a CDN a blob redirect points
// to) passes its scope's breaker first and reports how it went.
type scopedTransport struct {
	c    *Client
	base http.RoundTripper
}

func (t *scopedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	scope, b := c.breakers.get(c.scopeOf(req))
	probe, err := b.allow(scope, c.now())
	if err != nil {
		return nil, err
	}
	if probe && counted(req) {
		// A manifest GET is a counted pull: ask /v2/ first, which costs
		// nothing, and send the GET (whose answer ends the probe) only if
		// the registry answers at all.
		if err := t.ping(req.Context()); err != nil {
			if req.Context().Err() != nil {
				b.endProbe()
			} else {
				t.failure(scope, b, err)
			}
			return nil, err
		}
	}
	resp, err := t.base.RoundTrip(req)
	switch {
	case err != nil && req.Context().Err() != nil: // the caller left: no news of the upstream
		if probe {
			b.endProbe()
		}
	case err != nil:
		t.failure(scope, b, cleanURLError(err))
	case resp.StatusCode >= 500:
		t.failure(scope, b, fmt.Errorf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)))
	default: // it answered (a 2xx, a 404, a 401, a 429): it is up
		t.success(scope, b)
	}
	return resp, err
}

// ping asks the registry's /v2/ without credentials: any answer below 500
// (a 401 challenge is the usual one) means it is up.
func (t *scopedTransport) ping(ctx context.Context) error { _, err := t.c.ping(ctx); return err }

func (t *scopedTransport) failure(scope string, b *breaker, err error) {
	if b.failure(t.c.now(), err.Error()) {
		t.c.log.Warn("upstream breaker opened: failing fast for this endpoint until a request's probe succeeds",
			slog.String("upstream", t.c.name), slog.String("scope", scope), slog.Int("failures", b.threshold), slog.Any("error", err))
	}
}

func (t *scopedTransport) success(scope string, b *breaker) {
	if scope != ScopeToken && !strings.HasPrefix(scope, scopeCDN) {
		t.c.answered()
	}
	if closed, openFor := b.success(t.c.now()); closed {
		t.c.log.Info("upstream breaker closed: the endpoint answered again",
			slog.String("upstream", t.c.name), slog.String("scope", scope), slog.Duration("open_for", openFor))
	}
}

// scopeOf is the breaker scope of one outgoing request.
func (c *Client) scopeOf(req *http.Request) string {
	if auth.IsTokenRequest(req) {
		return ScopeToken
	}
	if !strings.EqualFold(req.URL.Host, c.base.Host) {
		return scopeCDN + strings.ToLower(req.URL.Host)
	}
	if p, err := oci.ParsePath(req.URL.Path); err == nil && p.Kind == oci.KindBlob {
		return ScopeBlobs
	}
	return ScopeManifests
}

// counted reports whether a request is one Docker Hub counts as a pull.
func counted(req *http.Request) bool {
	if req.Method != http.MethodGet {
		return false
	}
	p, err := oci.ParsePath(req.URL.Path)
	return err == nil && p.Kind == oci.KindManifest
}

func drainBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
