package access

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regcache/regcache/internal/httpguard"
)

// Failed logins from one client address are free up to freeFailures; then
// every further attempt from that address is refused without a password
// check for a backoff that doubles from one second to a minute. A success
// clears the address; ten minutes without a failure forget it. Other
// addresses are never slowed: a refused attempt takes no bcrypt slot.
const (
	freeFailures = 5
	maxLoginWait = time.Minute
)

type loginGuard struct {
	addrs *httpguard.Backoff[netip.Addr]
	users *httpguard.Backoff[string] // by user name, from any address

	mu    sync.Mutex
	slots map[netip.Addr]*addrSlot // whose turn it is to have a password checked

	failed    atomic.Int64 // wrong credentials
	throttled atomic.Int64 // attempts refused by the backoff
}

// The n-th failure with n == free is the first one waited for
// (httpguard.Backoff lets free-1 through).
func newLoginGuard(now func() time.Time) *loginGuard {
	return &loginGuard{addrs: httpguard.NewBackoff[netip.Addr](freeFailures-1, maxLoginWait, now),
		users: httpguard.NewBackoff[string](freeUserFailures-1, maxLoginWait, now), slots: map[netip.Addr]*addrSlot{}}
}

// wait is how long the address must wait before its next attempt (0: go).
func (g *loginGuard) wait(addr netip.Addr) time.Duration {
	return g.throttle(g.addrs.Wait(addr))
}

// throttle counts an attempt refused for a wait.
func (g *loginGuard) throttle(wait time.Duration) time.Duration {
	if wait > 0 {
		g.throttled.Add(1)
	}
	return wait
}

// One address has one password check under way at a time; its other
// attempts wait their turn (up to bcryptWait). A burst of wrong passwords
// from one address arrives before any failure is counted, and must not fill
// every bcrypt slot ahead of other clients; a burst of right ones (parallel
// pulls) waits a moment and then finds the first check remembered.
type addrSlot struct {
	ch    chan struct{}
	users int
}

// acquire waits up to wait for the address's turn; false means it did not
// come (the caller answers 429).
func (g *loginGuard) acquire(addr netip.Addr, wait time.Duration) bool {
	g.mu.Lock()
	s := g.slots[addr]
	if s == nil {
		s = &addrSlot{ch: make(chan struct{}, 1)}
		g.slots[addr] = s
	}
	s.users++
	g.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.ch <- struct{}{}:
		return true
	case <-t.C:
		g.throttled.Add(1)
		g.leave(addr, s)
		return false
	}
}

// release ends the address's turn.
func (g *loginGuard) release(addr netip.Addr) {
	g.mu.Lock()
	s := g.slots[addr]
	g.mu.Unlock()
	<-s.ch
	g.leave(addr, s)
}

func (g *loginGuard) leave(addr netip.Addr, s *addrSlot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(g.slots, addr)
	}
}

func (g *loginGuard) fail(addr netip.Addr) {
	g.failed.Add(1)
	g.addrs.Fail(addr)
}

func (g *loginGuard) ok(addr netip.Addr) { g.addrs.Succeed(addr) }

// Failed logins for one user name, from any addresses, are free up to
// freeUserFailures; then every further attempt for that name is refused
// without a password check for a backoff doubling from one second to a
// minute, so guesses spread over many addresses gain nothing. A user whose
// right password was checked within the minute is not held back (see
// Access.login), and a success clears the name.
const freeUserFailures = 10

// waitUser is how long attempts for user must wait (0: go).
func (g *loginGuard) waitUser(user string) time.Duration {
	return g.throttle(g.users.Wait(user))
}

func (g *loginGuard) failUser(user string) { g.users.Fail(user) }

func (g *loginGuard) okUser(user string) { g.users.Succeed(user) }
