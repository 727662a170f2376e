package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/httpguard"
	"github.com/regcache/regcache/internal/upstream"
)

// PeerPath is where the internal endpoint is mounted on the registry
// listener: GET PeerPath + digest ?upstream= &repo= &size= &offset=.
const PeerPath = "/_regcache/cluster/v1/blobs/"

// sizeHeader carries the blob's whole length (-1 unknown); haveHeader how
// many bytes of it a replica's running fill holds.
const (
	sizeHeader = "Regcache-Blob-Size"
	haveHeader = "Regcache-Blob-Have"
)

// Content is what the internal endpoint serves: a blob from the store or
// from this replica's own fill of it (started from upstream if none runs),
// without the access checks the asking replica already made. Its Send
// holds the blob's last byte until the blob is verified. *mirror.Service
// is the Content.
type Content interface {
	PeerBlob(ctx context.Context, upstream, repo string, d digest.Digest, size int64) (*fill.Reader, error)
}

// Handler serves the internal endpoint under PeerPath.
// have, when not nil, is how many bytes of d this replica's running fill
// of it holds (0 when none runs): asked with ?have=1, so that a replica
// taking a lease over streams that prefix from here instead of fetching
// it again.
func (c *Cluster) Handler(content Content, have func(digest.Digest) int64) http.Handler {
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
		if q.Get("have") != "" {
			var n int64
			if have != nil {
				n = have(d)
			}
			w.Header().Set(haveHeader, strconv.FormatInt(n, 10))
			w.WriteHeader(http.StatusNoContent)
			return
		}
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

// peerStatusError is a peer's answer other than 200: it is alive.
type peerStatusError struct{ msg string }

func (e *peerStatusError) Error() string { return e.msg }

// fetchPeer opens d at offset from peer's internal endpoint.
func (c *Cluster) fetchPeer(ctx context.Context, peer, up, repo string, d digest.Digest, size, offset int64) (*upstream.Blob, error) {
	q := url.Values{"upstream": {up}, "repo": {repo}, "size": {strconv.FormatInt(size, 10)}, "offset": {strconv.FormatInt(offset, 10)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+PeerPath+d.String()+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	c.signPeer(req)
	// A replica may take long to answer (its own fill waits for the
	// upstream's first byte), but one that stops heartbeating meanwhile
	// (frozen: the kernel still accepts the connection) is not waited for.
	answered := make(chan struct{})
	rctx, cancel := context.WithCancelCause(ctx)
	go func() {
		t := time.NewTicker(c.beat)
		defer t.Stop()
		for {
			select {
			case <-answered:
				return
			case <-t.C:
			}
			if !c.heartbeating(peer) {
				cancel(errPeerGone)
				return
			}
		}
	}()
	resp, err := c.http.Do(req.WithContext(rctx))
	close(answered)
	if err != nil {
		if context.Cause(rctx) == errPeerGone {
			err = fmt.Errorf("%w: %w", errPeerGone, err)
		}
		cancel(nil)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: func() { cancel(nil) }}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		resp.Body.Close()
		return nil, &peerStatusError{fmt.Sprintf("replica %s answered %s: %s", peer, resp.Status, strings.TrimSpace(string(msg)))}
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
//
// The fill that fetches from upstream holds d's lease; when the lease is
// lost (another replica took it over while this one was frozen, or its key
// vanished), the upstream body is cut at once and the fill resumes by
// Range from the new holder's stream, or takes the lease again if nobody
// holds it: two replicas never both download the rest of a digest.
func (c *Cluster) Source(up, repo string, d digest.Digest, size int64, fromPeer bool, direct fill.Source) fill.Source {
	name := "blob:" + d.String()
	var lease *Lease
	relapsed := false // this fill held the lease and lost it
	return func(ctx context.Context, offset int64) (*upstream.Blob, error) {
		if lease != nil {
			select {
			case <-lease.Lost:
				lease, relapsed = nil, true
			default:
			}
		}
		if lease == nil && (!fromPeer || relapsed) {
			if b, ok := c.fromPeers(ctx, name, up, repo, d, size, offset, relapsed); ok {
				return b, nil
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
		}
		if relapsed && lease == nil {
			// The replica that took the lease over may have committed
			// the blob already: the rest comes from the store.
			if b, ok := c.fromStore(ctx, up, d, offset); ok {
				return b, nil
			}
		}
		if lease == nil {
			h := c.Holder(ctx, name)
			takeover := relapsed || h != "" // not a cold miss: other replicas may hold some of it
			switch r := replicaOf(h); {
			case h == "":
				lease = c.Acquire(ctx, name, "")
				if lease == nil && !fromPeer {
					// Lost the race to take it: stream from the winner.
					if b, ok := c.fromPeers(ctx, name, up, repo, d, size, offset, true); ok {
						return b, nil
					}
				}
				if lease != nil && lease.lapsed != "" {
					// Not a cold miss: the lease of another fill of it
					// lapsed (its replica frozen or dead).
					h, takeover = lease.lapsed, true
				}
			case r == c.self && !c.mine(h):
				// This replica's dead predecessor (same URL, another
				// process): taken over, never adopted.
				lease = c.Acquire(ctx, name, h)
			case r != c.self && !c.isLive(r): // its holder died or cannot be reached: take over
				lease = c.Acquire(ctx, name, h)
			}
			// A live other holder we were sent past (fromPeer): fetch
			// without the lease rather than make a client wait. The
			// replica that sent us here found that holder gone before
			// we did (a heartbeat apart): what it (or another) holds
			// of the blob is streamed from it first.
			if lease == nil && fromPeer && h != "" && replicaOf(h) != c.self {
				if b, ok := c.prefixFromPeers(ctx, up, repo, d, size, offset); ok {
					return b, nil
				}
			}
			if lease != nil && takeover {
				// Just taken over: another replica's fill may hold
				// more of the blob than this one (it streamed from
				// the replica that stopped): that prefix comes from
				// it, the rest from upstream. (A cold miss asks no
				// one: it would add round trips to every first byte.)
				if b, ok := c.prefixFromPeers(ctx, up, repo, d, size, offset); ok {
					lease.guard(b)
					return b, nil
				}
				said := lease.lapsedHave
				if lease.lapsed == "" {
					said = c.reportedHave(ctx, name, h)
				}
				if b, ok := c.prefixFromStale(ctx, h, said, up, repo, d, size, offset); ok {
					lease.guard(b)
					return b, nil
				}
			}
		}
		b, err := direct(ctx, offset)
		if err == nil && lease != nil {
			lease.guard(b)
		}
		return b, err
	}
}

// minPrefix is the least a peer must hold beyond a fill's offset for the
// fill to stream that prefix from it rather than fetch it upstream.
const minPrefix = 1 << 20

// prefixFromPeers streams d from offset up to what the live replica whose
// running fill holds the most of it has, when that is at least minPrefix
// more than offset. The body ends there; the fill goes on from upstream by
// Range.
func (c *Cluster) prefixFromPeers(ctx context.Context, up, repo string, d digest.Digest, size, offset int64) (*upstream.Blob, bool) {
	// Every live replica at once, so a slow or frozen one costs the
	// takeover its timeout once, not once per replica.
	type held struct {
		peer string
		n    int64
	}
	var peers []string
	for _, p := range c.Live() {
		if p != c.self {
			peers = append(peers, p)
		}
	}
	answers := make(chan held, len(peers))
	for _, p := range peers {
		go func() { n, _ := c.peerHas(ctx, p, d, peerHasTimeout); answers <- held{p, n} }()
	}
	var best string
	var most int64
	for range peers {
		if a := <-answers; a.n > most {
			best, most = a.peer, a.n
		}
	}
	if most < offset+minPrefix {
		return nil, false
	}
	return c.prefixFrom(ctx, best, most, up, repo, d, size, offset, false)
}

// prefixFrom streams d from offset up to most (what peer's running fill
// holds) from peer. With grow, peer is asked again when that is read, and
// the stream goes on while its fill holds more (a holder woken from a
// freeze reads what its socket buffers kept).
func (c *Cluster) prefixFrom(ctx context.Context, peer string, most int64, up, repo string, d digest.Digest, size, offset int64, grow bool) (*upstream.Blob, bool) {
	b, err := c.fetchPeer(ctx, peer, up, repo, d, size, offset)
	if err != nil {
		return nil, false
	}
	if b.Size < 0 { // an end before the size is known would read as the blob's end
		b.Body.Close()
		return nil, false
	}
	if most < b.Size { // a complete blob is streamed whole (its last byte once verified)
		p := &prefixReader{body: b.Body, left: most - offset, at: most}
		if grow {
			p.more = func() int64 {
				n, _ := c.peerHas(ctx, peer, d, time.Second)
				return n
			}
		}
		b.Body = p
	}
	b.Body = c.whileHeartbeating(peer, b.Body)
	c.log.Info("cluster: taking a fill over from what another replica holds", slog.String("replica", peer),
		slog.String("digest", d.String()), slog.Int64("from", offset), slog.Int64("to", most))
	return b, true
}

// staleWait bounds how long a replica taking a lease over waits for the
// replica that held it (frozen: a stopped process, a paused VM) to answer
// again, when that one alone holds a prefix of the blob worth waiting for.
// Its clients wait meanwhile; the bytes are not fetched twice.
const staleWait = 10 * time.Second

// worthWaiting is the least a frozen holder must have said it received
// beyond offset for the replica taking its lease over to wait for it: a
// sixteenth of the blob, and at least 4 MiB.
func worthWaiting(size int64) int64 { return max(4*minPrefix, size/16) }

// prefixFromStale streams d from offset up to what the previous holder of
// its lease (stale: found not live, or its lease lapsed) holds, when no
// live replica holds as much: that holder said it had received said
// bytes (Lease.received), at least worthWaiting more than offset, and its
// address still takes connections (a frozen process; a dead one refuses,
// and its spool is gone with it). The replica is asked again every
// quarter second for up to staleWait; when it answers, its prefix is
// streamed from it, and the rest of the blob comes from upstream.
// Otherwise (it never answers, or answers that it holds less), false: the
// caller fetches from upstream.
func (c *Cluster) prefixFromStale(ctx context.Context, stale string, said int64, up, repo string, d digest.Digest, size, offset int64) (*upstream.Blob, bool) {
	peer := replicaOf(stale)
	if peer == "" || peer == c.self {
		return nil, false
	}
	if said-offset < worthWaiting(size) || !takesConnections(ctx, peer) {
		return nil, false
	}
	c.log.Info("cluster: the replica that held this fill's lease alone holds its first bytes; waiting for it to answer",
		slog.String("replica", peer), slog.String("digest", d.String()), slog.Int64("from", offset), slog.Int64("said", said))
	deadline := time.Now().Add(staleWait)
	for time.Now().Before(deadline) {
		// It must answer and heartbeat again: a stream from a replica
		// not seen heartbeating is cut (fetchPeer, whileHeartbeating).
		if n, answered := c.peerHas(ctx, peer, d, time.Second); answered && c.heartbeating(peer) {
			if n < offset+minPrefix {
				return nil, false
			}
			return c.prefixFrom(ctx, peer, n, up, repo, d, size, offset, true)
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(250 * time.Millisecond):
		}
	}
	c.log.Info("cluster: the replica that held this fill's lease did not answer again; fetching from upstream", slog.String("replica", peer), slog.String("digest", d.String()))
	return nil, false
}

// takesConnections reports whether peer's address accepts a TCP
// connection within a second.
func takesConnections(ctx context.Context, peer string) bool {
	u, err := url.Parse(peer)
	if err != nil {
		return false
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	var dl net.Dialer
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := dl.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// peerHasTimeout bounds a takeover's question to a replica: a loaded one
// answers in milliseconds, but a second was too short on a busy machine
// (the prefix was then fetched upstream again).
const peerHasTimeout = 3 * time.Second

// peerHas asks peer how many bytes of d its running fill holds (0 when it
// runs none). answered is false when it did not answer within timeout.
func (c *Cluster) peerHas(ctx context.Context, peer string, d digest.Digest, timeout time.Duration) (n int64, answered bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(peer, "/")+PeerPath+d.String()+"?have=1", nil)
	if err != nil {
		return 0, false
	}
	c.signPeer(req)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	n, err = strconv.ParseInt(resp.Header.Get(haveHeader), 10, 64)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		return 0, true
	}
	return n, true
}

// fromStore opens d at offset in the shared store, if it holds d.
func (c *Cluster) fromStore(ctx context.Context, up string, d digest.Digest, offset int64) (*upstream.Blob, bool) {
	if c.stored == nil {
		return nil, false
	}
	body, size, err := c.stored(ctx, d)
	if err != nil {
		return nil, false
	}
	if _, err := body.Seek(offset, io.SeekStart); err != nil {
		body.Close()
		return nil, false
	}
	c.log.Info("cluster: resuming a fill from the store, committed by the replica that took its lease", slog.String("digest", d.String()), slog.Int64("offset", offset))
	return &upstream.Blob{Body: body, Offset: offset, Size: size, Upstream: up}, true
}

// fromPeers streams d from its lease holder, else (unless holderOnly) its
// owner, when that is another live replica. A peer that cannot be reached
// is suspected and the choice made once more; a peer that answers with an
// error is not suspected (it is alive), and the caller fetches itself.
func (c *Cluster) fromPeers(ctx context.Context, name, up, repo string, d digest.Digest, size, offset int64, holderOnly bool) (*upstream.Blob, bool) {
	tried := map[string]bool{}
	for range 2 { // the holder or owner, then once more if it was unreachable
		peer := c.target(ctx, name, holderOnly)
		if peer == "" || tried[peer] {
			return nil, false
		}
		tried[peer] = true
		b, err := c.fetchPeer(ctx, peer, up, repo, d, size, offset)
		if err == nil {
			b.Body = c.whileHeartbeating(peer, b.Body)
			return b, true
		}
		if ctx.Err() != nil {
			return nil, false
		}
		if !c.unreachable(peer, err) {
			c.log.Warn("cluster: replica could not serve a fill; fetching ourselves", slog.String("replica", peer),
				slog.String("digest", d.String()), slog.Int64("offset", offset), slog.Any("error", err))
			return nil, false
		}
		c.log.Warn("cluster: replica unreachable for a fill; choosing again", slog.String("replica", peer),
			slog.String("digest", d.String()), slog.Int64("offset", offset), slog.Any("error", err))
		c.Suspect(peer)
	}
	return nil, false
}

// errPeerGone cuts a stream from a replica that stopped heartbeating.
var errPeerGone = errors.New("cluster: the replica streaming the blob stopped heartbeating")

// whileHeartbeating cuts body from peer once peer stops heartbeating (a
// frozen or partitioned replica keeps its connections open but sends
// nothing): the fill resumes by Range from what it has, from the replica
// chosen then, which takes the lease over and fetches the rest upstream
// if it is the new owner. With Redis away the last live set stays, and
// nothing is cut.
func (c *Cluster) whileHeartbeating(peer string, body io.ReadCloser) io.ReadCloser {
	gone, stop := make(chan struct{}), make(chan struct{})
	go func() {
		t := time.NewTicker(c.beat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if !c.heartbeating(peer) {
				c.log.Warn("cluster: replica stopped heartbeating mid-stream; resuming from another", slog.String("replica", peer))
				c.Suspect(peer)
				close(gone)
				return
			}
		}
	}()
	return &stopOnClose{ReadCloser: cutOn(body, gone, errPeerGone), stop: stop}
}

// prefixReader reads a peer's stream of a blob up to at, what the peer's
// fill held (left bytes more). With more, the peer is asked again there
// (three times, 200 ms apart) and the stream goes on up to what it holds
// then; without, or when it holds no more, the body ends (the fill goes
// on from upstream by Range).
type prefixReader struct {
	body io.ReadCloser
	left int64
	at   int64
	more func() int64
}

func (p *prefixReader) Read(b []byte) (int, error) {
	for p.left <= 0 {
		if p.more == nil {
			return 0, io.EOF
		}
		grew := false
		for i := range 3 {
			if i > 0 {
				time.Sleep(200 * time.Millisecond)
			}
			if n := p.more(); n > p.at {
				p.left, p.at, grew = n-p.at, n, true
				break
			}
		}
		if !grew {
			p.more = nil
		}
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n, err := p.body.Read(b)
	p.left -= int64(n)
	return n, err
}

func (p *prefixReader) Close() error { return p.body.Close() }

// cancelOnClose releases a request's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// stopOnClose stops a watch when its body is closed.
type stopOnClose struct {
	io.ReadCloser
	stop chan struct{}
	once sync.Once
}

func (s *stopOnClose) Close() error {
	s.once.Do(func() { close(s.stop) })
	return s.ReadCloser.Close()
}

// unreachable reports whether err from asking peer means it stopped
// answering: the connection could not be made, or the peer no longer
// heartbeats. A slow answer or a non-200 from a live peer is no reason to
// take its leases.
func (c *Cluster) unreachable(peer string, err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	var pe *peerStatusError
	if errors.As(err, &pe) {
		return false
	}
	return !c.heartbeating(peer)
}

// target is the replica to stream name from: its lease holder when that is
// another live replica, else (unless holderOnly) its owner when that is
// another replica, else "" (fetch ourselves).
func (c *Cluster) target(ctx context.Context, name string, holderOnly bool) string {
	if h := replicaOf(c.Holder(ctx, name)); h != "" && h != c.self && c.isLive(h) {
		return h
	}
	if holderOnly {
		return ""
	}
	if o := c.Owner(name); o != c.self {
		return o
	}
	return ""
}
