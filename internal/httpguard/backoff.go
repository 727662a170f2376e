package httpguard

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Backoff slows down guessing of a secret (a token, a shared secret, a
// password): after free wrong attempts from one key (a client address, a
// user name), every further attempt for it is refused unchecked for a wait
// that doubles from one second to maxWait; a right attempt clears the key,
// and ten minutes without a failure forget it. Other keys are never
// slowed; at most 10,000 are remembered. It is safe for concurrent use.
type Backoff[K comparable] struct {
	free    int
	maxWait time.Duration
	now     func() time.Time

	mu sync.Mutex
	m  map[K]*failures
}

type failures struct {
	n     int
	last  time.Time
	until time.Time
}

const (
	forgetAfter = 10 * time.Minute
	maxTracked  = 10_000
)

// NewBackoff returns a Backoff letting free wrong attempts through before
// it slows a key down, to at most maxWait between attempts, on the clock
// now (time.Now when nil).
func NewBackoff[K comparable](free int, maxWait time.Duration, now func() time.Time) *Backoff[K] {
	if now == nil {
		now = time.Now
	}
	return &Backoff[K]{free: free, maxWait: maxWait, now: now, m: map[K]*failures{}}
}

// Wait is how long the key must wait before its next attempt is checked
// (0: check it now).
func (b *Backoff[K]) Wait(k K) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.m[k]; f != nil {
		return max(f.until.Sub(b.now()), 0)
	}
	return 0
}

// Fail records a wrong attempt for the key.
func (b *Backoff[K]) Fail(k K) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.m) >= maxTracked {
		for a, f := range b.m {
			if now.Sub(f.last) > forgetAfter {
				delete(b.m, a)
			}
		}
		if len(b.m) >= maxTracked {
			clear(b.m)
		}
	}
	f := b.m[k]
	if f == nil || now.Sub(f.last) > forgetAfter {
		f = &failures{}
		b.m[k] = f
	}
	f.n++
	f.last = now
	if over := f.n - b.free; over > 0 {
		wait := b.maxWait
		if over < 8 {
			wait = min(time.Second<<(over-1), b.maxWait)
		}
		f.until = now.Add(wait)
	}
}

// Succeed clears the key's failures.
func (b *Backoff[K]) Succeed(k K) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, k)
}

// PeerAddr is r's peer address (X-Forwarded-For is not read), or the
// invalid address.
func PeerAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}
