package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/httpguard"
	"github.com/regcache/regcache/internal/upstream"
)

// PeerPath is where the internal endpoint is mounted on the registry
// listener: GET PeerPath + digest ?upstream= &repo= &size= &offset=.
const PeerPath = "/_regcache/cluster/v1/blobs/"

// sizeHeader carries the blob's whole length (-1 unknown).
const sizeHeader = "Regcache-Blob-Size"

// Content is what the internal endpoint serves: a blob from the store or
// from this replica's own fill of it (started from upstream if none runs),
// without the access checks the asking replica already made. Its Send
// holds the blob's last byte until the blob is verified. *mirror.Service
// is the Content.
type Content interface {
	PeerBlob(ctx context.Context, upstream, repo string, d digest.Digest, size int64) (*fill.Reader, error)
}

// Handler serves the internal endpoint under PeerPath.
func (c *Cluster) Handler(content Content) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.authorized(w, r) {
			return
		}
		d, err := digest.Parse(strings.TrimPrefix(r.URL.Path, PeerPath))
		if err != nil {
			http.Error(w, "cluster: "+err.Error(), http.StatusBadRequest)
			return
		}
		q := r.URL.Query()
		size, err1 := strconv.ParseInt(q.Get("size"), 10, 64)
		offset, err2 := strconv.ParseInt(q.Get("offset"), 10, 64)
		if err1 != nil || err2 != nil || offset < 0 {
			http.Error(w, "cluster: size and offset must be integers", http.StatusBadRequest)
			return
		}
		b, err := content.PeerBlob(r.Context(), q.Get("upstream"), q.Get("repo"), d, size)
		if err != nil {
			c.log.Warn("cluster: peer blob", slog.String("digest", d.String()), slog.Any("error", err))
			http.Error(w, "cluster: "+err.Error(), http.StatusBadGateway)
			return
		}
		defer b.Close()
		total, err := b.Size(r.Context())
		if err != nil {
			http.Error(w, "cluster: "+err.Error(), http.StatusBadGateway)
			return
		}
		if total >= 0 && offset > total {
			http.Error(w, "cluster: offset beyond the blob", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		w.Header().Set(sizeHeader, strconv.FormatInt(total, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		if total >= 0 {
			w.Header().Set("Content-Length", strconv.FormatInt(total-offset, 10))
		}
		w.WriteHeader(http.StatusOK)
		if err := b.Send(r.Context(), w, offset, -1); err != nil {
			// Cut the response: the asking replica sees a failed
			// transfer, never a complete wrong one.
			panic(http.ErrAbortHandler)
		}
	})
}

// authorized checks the request's secret, answering the refusal itself:
// a wrong one is logged (never its value) and counted, and after five
// from one address that address is refused unchecked for a backoff
// doubling from a second to a minute.
func (c *Cluster) authorized(w http.ResponseWriter, r *http.Request) bool {
	addr := httpguard.PeerAddr(r)
	if wait := c.guess.Wait(addr); wait > 0 {
		c.throttled.Add(1)
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		http.Error(w, "cluster: too many wrong secrets from your address; wait", http.StatusTooManyRequests)
		return false
	}
	if c.verifyPeer(r, time.Now()) {
		c.guess.Succeed(addr)
		return true
	}
	c.guess.Fail(addr)
	c.failed.Add(1)
	c.log.Warn("cluster: wrong or missing secret on the internal endpoint", slog.String("client", addr.String()))
	http.Error(w, "cluster: wrong or missing secret", http.StatusUnauthorized)
	return false
}

// fetchPeer opens d at offset from peer's internal endpoint.
func (c *Cluster) fetchPeer(ctx context.Context, peer, up, repo string, d digest.Digest, size, offset int64) (*upstream.Blob, error) {
	q := url.Values{"upstream": {up}, "repo": {repo}, "size": {strconv.FormatInt(size, 10)}, "offset": {strconv.FormatInt(offset, 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+PeerPath+d.String()+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	c.signPeer(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, fmt.Errorf("replica %s answered %s: %s", peer, resp.Status, strings.TrimSpace(string(msg)))
	}
	total, err := strconv.ParseInt(resp.Header.Get(sizeHeader), 10, 64)
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("replica %s: no %s", peer, sizeHeader)
	}
	return &upstream.Blob{Body: resp.Body, Offset: offset, Size: total, Upstream: up}, nil
}

// Source is the fill source of d for a replica of the cluster. direct
// fetches from the upstream. fromPeer is set when another replica asked
// (the internal endpoint): then this replica fetches from upstream itself,
// so requests never go round in a circle.
func (c *Cluster) Source(up, repo string, d digest.Digest, size int64, fromPeer bool, direct fill.Source) fill.Source {
	name := "blob:" + d.String()
	leased := false
	return func(ctx context.Context, offset int64) (*upstream.Blob, error) {
		if !leased && !fromPeer {
			tried := map[string]bool{}
			for range 2 { // the holder or owner, then once more if it was unreachable
				peer := c.target(ctx, name)
				if peer == "" || tried[peer] {
					break
				}
				tried[peer] = true
				b, err := c.fetchPeer(ctx, peer, up, repo, d, size, offset)
				if err == nil {
					return b, nil
				}
				if ctx.Err() != nil {
					return nil, err
				}
				c.log.Warn("cluster: replica unreachable for a fill; choosing again", slog.String("replica", peer),
					slog.String("digest", d.String()), slog.Int64("offset", offset), slog.Any("error", err))
				c.Suspect(peer)
			}
		}
		if !leased {
			switch h := c.Holder(ctx, name); {
			case h == c.self:
				leased = true
			case h == "":
				leased = c.Acquire(ctx, name, "")
			case !c.isLive(h): // its holder died or cannot be reached: take over
				leased = c.Acquire(ctx, name, h)
			}
			// A live other holder we were sent past (fromPeer): fetch
			// without the lease rather than make a client wait.
		}
		return direct(ctx, offset)
	}
}

// target is the replica to stream name from: its lease holder when that is
// another live replica, else its owner when that is another replica, else
// "" (fetch ourselves).
func (c *Cluster) target(ctx context.Context, name string) string {
	if h := c.Holder(ctx, name); h != "" && h != c.self && c.isLive(h) {
		return h
	}
	if o := c.Owner(name); o != c.self {
		return o
	}
	return ""
}
