package upstream

import (
	"context"
	"io"
	"net/http"

	"golang.org/x/time/rate"
)

// WithMaxBandwidth caps the bytes per second read from the upstream (its
// registry host, token realm and the CDN hosts its blobs redirect to),
// shared by every request of the client: fills, prefetch, revalidation
// and warm together never read faster. Reading slower than the upstream
// sends fills the connection's receive window, so TCP slows the sender:
// the cap holds on the upstream link, not only towards clients (who read
// the growing file at their own pace). 0 or less is unlimited.
func WithMaxBandwidth(bytesPerSecond int64) Option {
	return func(c *Client) {
		if bytesPerSecond > 0 {
			c.bandwidth = rate.NewLimiter(rate.Limit(bytesPerSecond), burstOf(bytesPerSecond))
		}
	}
}

// WithMaxConnections bounds the connections the client holds open to each
// host of the upstream (its registry host, token realm and each CDN host),
// idle ones included. Requests beyond it wait, first come first served,
// for a connection to come free: fills, prefetch, revalidation and warm,
// manifests as well as blobs. The health probe's GET /v2/ does not wait:
// it may use one more. With HTTP/2 a connection carries many requests, so
// the bound is on connections, not requests. 0 or less is unlimited.
func WithMaxConnections(n int) Option {
	return func(c *Client) { c.maxConns = max(n, 0) }
}

// WithFillConnections sets how many connections one fill of a large blob
// may use (upstreams[].fill_connections); 1 fills each blob over one.
func WithFillConnections(n int) Option {
	return func(c *Client) { c.fillConns = max(n, 1) }
}

// FillConnections is how many connections one fill of a large blob may
// use: upstreams[].fill_connections, bounded by max_connections.
func (c *Client) FillConnections() int {
	if c.maxConns > 0 {
		return min(c.fillConns, c.maxConns)
	}
	return c.fillConns
}

// MaxConnections is the bound of connections per host (0 is unlimited).
func (c *Client) MaxConnections() int { return c.maxConns }

// limitConnections applies WithMaxConnections to the base transport (an
// *http.Transport; another base is left as it is) and returns the
// transport for health probes: the base without the bound, so a probe of
// an upstream busy with long blob fills is not taken for a dead one.
func (c *Client) limitConnections() http.RoundTripper {
	ht, ok := c.http.Transport.(*http.Transport)
	if c.maxConns <= 0 || !ok {
		return c.http.Transport
	}
	probe := ht.Clone()
	ht.MaxConnsPerHost = c.maxConns
	return probe
}

// MaxBandwidth is the bytes per second the client reads at most (0 is
// unlimited).
func (c *Client) MaxBandwidth() int64 {
	if c.bandwidth == nil {
		return 0
	}
	return int64(c.bandwidth.Limit())
}

// burstOf is the most bytes one read may take at once: a tenth of a
// second's worth, between 4 KiB and 256 KiB, so readers share the rate in
// small turns.
func burstOf(bytesPerSecond int64) int {
	return int(min(max(bytesPerSecond/10, 4<<10), 256<<10))
}

// limitedTransport paces every response body through one limiter.
type limitedTransport struct {
	base http.RoundTripper
	lim  *rate.Limiter
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method == http.MethodHead {
		return resp, err
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, ctx: req.Context(), lim: t.lim}
	return resp, nil
}

// limitedBody waits for the limiter after each read, for the bytes it
// read; a read asks for no more than the limiter's burst.
type limitedBody struct {
	io.ReadCloser
	ctx context.Context
	lim *rate.Limiter
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if burst := b.lim.Burst(); len(p) > burst {
		p = p[:burst]
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		if werr := b.lim.WaitN(b.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}
