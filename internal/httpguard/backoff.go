package httpguard

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Backoff slows down guessing of a secret (a token, a shared secret): after
// free wrong attempts from one client address, every further attempt from
// it is refused unchecked for a wait that doubles from one second to
// maxWait; a right attempt clears the address, and ten minutes without a
// failure forget it. Other addresses are never slowed. It is safe for
// concurrent use.
type Backoff struct {
	free    int
	maxWait time.Duration
	now     func() time.Time

	mu sync.Mutex
	m  map[netip.Addr]*failures
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
// it slows an address down, to at most maxWait between attempts.
func NewBackoff(free int, maxWait time.Duration) *Backoff {
	return &Backoff{free: free, maxWait: maxWait, now: time.Now, m: map[netip.Addr]*failures{}}
}

// Wait is how long the address must wait before its next attempt is
// checked (0: check it now).
func (b *Backoff) Wait(addr netip.Addr) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if f := b.m[addr]; f != nil {
		return max(f.until.Sub(b.now()), 0)
	}
	return 0
}

// Fail records a wrong attempt from the address.
func (b *Backoff) Fail(addr netip.Addr) {
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
	f := b.m[addr]
	if f == nil || now.Sub(f.last) > forgetAfter {
		f = &failures{}
		b.m[addr] = f
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

// Succeed clears the address's failures.
func (b *Backoff) Succeed(addr netip.Addr) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, addr)
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
