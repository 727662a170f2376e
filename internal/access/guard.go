package access

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Failed logins from one client address are free up to freeFailures; then
// every further attempt from that address is refused without a password
// check for a backoff that doubles from one second to a minute. A success
// clears the address; ten minutes without a failure forget it. Other
// addresses are never slowed: a refused attempt takes no bcrypt slot.
const (
	freeFailures   = 5
	maxLoginWait   = time.Minute
	forgetFailures = 10 * time.Minute
	maxGuarded     = 10_000
)

type loginGuard struct {
	now func() time.Time

	mu       sync.Mutex
	m        map[netip.Addr]*failures
	checking map[netip.Addr]int // password checks under way, per address

	failed    atomic.Int64 // wrong credentials
	throttled atomic.Int64 // attempts refused by the backoff
}

type failures struct {
	n     int
	last  time.Time
	until time.Time
}

func newLoginGuard(now func() time.Time) *loginGuard {
	return &loginGuard{now: now, m: map[netip.Addr]*failures{}, checking: map[netip.Addr]int{}}
}

// wait is how long the address must wait before its next attempt (0: go).
func (g *loginGuard) wait(addr netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.m[addr]
	if f == nil {
		return 0
	}
	if left := f.until.Sub(g.now()); left > 0 {
		g.throttled.Add(1)
		return left
	}
	return 0
}

// maxChecking bounds one address's password checks at a time: a burst of
// wrong passwords from one address arrives before any failure is counted,
// and must not fill every bcrypt slot ahead of other clients.
const maxChecking = 1

// begin reserves a password check for the address; false means it has
// maxChecking under way already. end releases it.
func (g *loginGuard) begin(addr netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.checking[addr] >= maxChecking {
		g.throttled.Add(1)
		return false
	}
	g.checking[addr]++
	return true
}

func (g *loginGuard) end(addr netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.checking[addr]--; g.checking[addr] <= 0 {
		delete(g.checking, addr)
	}
}

func (g *loginGuard) fail(addr netip.Addr) {
	g.failed.Add(1)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.m) >= maxGuarded {
		for a, f := range g.m {
			if now.Sub(f.last) > forgetFailures {
				delete(g.m, a)
			}
		}
		if len(g.m) >= maxGuarded {
			clear(g.m)
		}
	}
	f := g.m[addr]
	if f == nil || now.Sub(f.last) > forgetFailures {
		f = &failures{}
		g.m[addr] = f
	}
	f.n++
	f.last = now
	if f.n >= freeFailures {
		f.until = now.Add(min(time.Second<<min(f.n-freeFailures, 6), maxLoginWait))
	}
}

func (g *loginGuard) ok(addr netip.Addr) {
	g.mu.Lock()
	delete(g.m, addr)
	g.mu.Unlock()
}
