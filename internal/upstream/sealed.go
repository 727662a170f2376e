package upstream

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrSealed is the error of every request to a sealed upstream: the
// mirror never contacts it (no request, no token, no probe).
var ErrSealed = errors.New("the upstream is sealed (upstreams[].sealed): the mirror never contacts it, and this is not in its cache")

// WithSealed seals the client from the start (see SetSealed).
func WithSealed(on bool) Option { return func(c *Client) { c.sealed.on.Store(on) } }

// WithSealedMissStatus sets the status a refused request is answered with
// (see SetSealedMissStatus).
func WithSealedMissStatus(status int) Option {
	return func(c *Client) { c.SetSealedMissStatus(status) }
}

// SetSealedMissStatus sets the status a request refused while sealed is
// answered with: 503 (the mirror is unavailable for it, clients retry),
// anything else 404 (the content is unknown). Live on SIGHUP.
func (c *Client) SetSealedMissStatus(status int) {
	c.sealed.unavailable.Store(status == http.StatusServiceUnavailable)
}

// SealedMissStatus is the status a refused request is answered with.
func (c *Client) SealedMissStatus() int {
	if c.sealed.unavailable.Load() {
		return http.StatusServiceUnavailable
	}
	return http.StatusNotFound
}

// SealedStatus reports whether err is a request refused by a sealed
// upstream, and the status to answer it with (404 or 503, as the client
// was set when it refused).
func SealedStatus(err error) (int, bool) {
	var se *sealedError
	if !errors.As(err, &se) {
		return 0, false
	}
	return se.status, true
}

// sealedError is ErrSealed with the status to answer it with.
type sealedError struct{ status int }

func (e *sealedError) Error() string        { return ErrSealed.Error() }
func (e *sealedError) Is(target error) bool { return target == ErrSealed }

// SetSealed seals or unseals the client (SIGHUP). Sealed, every request
// fails with ErrSealed before anything leaves the process, and is recorded
// as a miss; probes are skipped.
func (c *Client) SetSealed(on bool) { c.sealed.on.Store(on) }

// Sealed reports whether the client is sealed.
func (c *Client) Sealed() bool { return c.sealed.on.Load() }

// Miss is a request a sealed client refused: what the mirror would have
// fetched ("GET manifest library/alpine:3.20"), how often, and when last.
type Miss struct {
	Op    string    `json:"op"`
	Count int64     `json:"count"`
	Last  time.Time `json:"last"`
}

// maxMisses bounds the misses kept; more distinct ones are counted only.
const maxMisses = 1000

// sealedState is the seal and what it refused.
type sealedState struct {
	on          atomic.Bool
	unavailable atomic.Bool // misses are answered 503, not 404
	mu          sync.Mutex
	misses      map[string]*Miss
	total       int64
}

// refuse records a refused request and returns its error.
func (c *Client) refuse(op string) error {
	s := &c.sealed
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total++
	if s.misses == nil {
		s.misses = map[string]*Miss{}
	}
	m, ok := s.misses[op]
	if !ok && len(s.misses) < maxMisses {
		m = &Miss{Op: op}
		s.misses[op] = m
	}
	if m != nil {
		m.Count++
		m.Last = c.now()
	}
	c.log.Debug("sealed upstream: not contacted", "upstream", c.name, "op", op)
	return &Error{Upstream: c.name, Op: op, Err: &sealedError{status: c.SealedMissStatus()}}
}

// SealedMisses are the requests refused while sealed, the most asked
// first (at most maxMisses distinct ones), and how many were refused in all.
func (c *Client) SealedMisses() ([]Miss, int64) {
	s := &c.sealed
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Miss, 0, len(s.misses))
	for _, m := range s.misses {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Miss) int {
		if a.Count != b.Count {
			return int(b.Count - a.Count)
		}
		return strings.Compare(a.Op, b.Op)
	})
	return out, s.total
}
