// Package fleet keeps the bounded table of the clients a mirror has
// served: each client address and engine (read from the User-Agent),
// when it was first and last seen, its pulls and bytes, and the canary
// tags (package canary) that arrived, so an operator sees which nodes
// pull through the mirror, which went quiet, and a node can prove its
// own pulls arrive.
package fleet

import (
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Request is one answered request as the table counts it.
type Request struct {
	Time      time.Time
	Addr      netip.Addr // the client, after trusted proxies
	UserAgent string
	// Pull is a manifest answered by tag: an engine's pull of an image.
	Pull  bool
	Bytes int64
	// CanaryTag is the canary tag a manifest answer was for, "" otherwise.
	CanaryTag string
}

// Node is one client address and engine.
type Node struct {
	Addr      netip.Addr `json:"addr"`
	Engine    Engine     `json:"engine"`
	FirstSeen time.Time  `json:"firstSeen"`
	LastSeen  time.Time  `json:"lastSeen"`
	Pulls     int64      `json:"pulls"`
	Bytes     int64      `json:"bytes"`
}

// Arrival is a canary tag's first arrival.
type Arrival struct {
	Tag    string     `json:"tag"`
	Addr   netip.Addr `json:"addr"`
	Engine Engine     `json:"engine"`
	At     time.Time  `json:"at"`
}

// The bounds the mirror uses.
const (
	DefaultMaxNodes    = 10000
	DefaultMaxArrivals = 1024
)

type key struct {
	addr   netip.Addr
	engine string
}

// Table is the bounded table: at most maxNodes nodes, the least recently
// seen dropped first, and the last maxArrivals canary arrivals. Safe for
// concurrent use.
type Table struct {
	maxNodes, maxArrivals int

	mu       sync.Mutex
	nodes    map[key]*list.Element // of *Node
	lru      *list.List            // front: most recently seen
	dropped  int64                 // nodes dropped to stay within maxNodes
	tags     map[string]Arrival
	order    []string       // tags by arrival, oldest first, at most maxArrivals
	expected []netip.Prefix // fleet.expected (SetExpected)
}

// New returns an empty table keeping at most maxNodes nodes and
// maxArrivals canary arrivals (at least one of each).
func New(maxNodes, maxArrivals int) *Table {
	return &Table{maxNodes: max(maxNodes, 1), maxArrivals: max(maxArrivals, 1),
		nodes: map[key]*list.Element{}, lru: list.New(), tags: map[string]Arrival{}}
}

// Observe counts one answered request. Requests without a valid client
// address are not counted.
func (t *Table) Observe(r Request) {
	if !r.Addr.IsValid() {
		return
	}
	eng := ParseUserAgent(r.UserAgent)
	k := key{r.Addr, eng.Name}
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.nodes[k]
	if !ok {
		if t.lru.Len() >= t.maxNodes {
			oldest := t.lru.Back()
			n := oldest.Value.(*Node)
			delete(t.nodes, key{n.Addr, n.Engine.Name})
			t.lru.Remove(oldest)
			t.dropped++
		}
		el = t.lru.PushFront(&Node{Addr: r.Addr, Engine: eng, FirstSeen: r.Time})
		t.nodes[k] = el
	}
	t.lru.MoveToFront(el)
	n := el.Value.(*Node)
	n.LastSeen, n.Bytes = r.Time, n.Bytes+r.Bytes
	if eng.Version != "" {
		n.Engine.Version = eng.Version
	}
	if r.Pull {
		n.Pulls++
	}
	if r.CanaryTag != "" {
		t.arrived(Arrival{Tag: r.CanaryTag, Addr: r.Addr, Engine: n.Engine, At: r.Time})
	}
}

// arrived records a canary tag's first arrival; t.mu is held.
func (t *Table) arrived(a Arrival) {
	if _, ok := t.tags[a.Tag]; ok {
		return
	}
	if len(t.order) >= t.maxArrivals {
		delete(t.tags, t.order[0])
		t.order = t.order[1:]
	}
	t.tags[a.Tag] = a
	t.order = append(t.order, a.Tag)
}

// Canary is the first arrival of a canary tag, if it is still kept.
func (t *Table) Canary(tag string) (Arrival, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a, ok := t.tags[tag]
	return a, ok
}

// Summary is the table as /status shows it.
type Summary struct {
	// Nodes is how many client addresses were seen in each window
	// ("1h", "24h") and in all (the table's bound permitting).
	LastHour int `json:"lastHour"`
	LastDay  int `json:"lastDay"`
	Known    int `json:"known"`
	// QuietCount is how many addresses were seen before but not in the
	// last day; Quiet lists them, most recently seen first (at most
	// maxListed).
	QuietCount int    `json:"quietCount"`
	Quiet      []Node `json:"quiet"`
	// Recent lists the nodes seen most recently (at most maxListed).
	Recent []Node `json:"recent"`
	// Canaries are the last canary arrivals, newest first (at most maxListed).
	Canaries []Arrival `json:"canaries"`
	// Dropped is how many nodes were dropped to keep the table bounded.
	Dropped int64 `json:"dropped"`
	Max     int   `json:"max"`
	// Expected is the fleet.expected check, when it is configured.
	Expected *ExpectedStatus `json:"expected,omitempty"`
}

// maxListed bounds each list of a Summary.
const maxListed = 50

// Windows are the windows nodes are counted in, for the metric.
var Windows = []struct {
	Label string
	Span  time.Duration
}{{"1h", time.Hour}, {"24h", 24 * time.Hour}}

// Summarize counts the nodes seen as of now.
func (t *Table) Summarize(now time.Time) Summary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Summary{Dropped: t.dropped, Max: t.maxNodes}
	last := map[netip.Addr]time.Time{} // an address's latest, over its engines
	for el := t.lru.Front(); el != nil; el = el.Next() {
		n := el.Value.(*Node)
		if len(s.Recent) < maxListed {
			s.Recent = append(s.Recent, *n)
		}
		if n.LastSeen.After(last[n.Addr]) {
			last[n.Addr] = n.LastSeen
		}
	}
	s.Known = len(last)
	s.Expected = t.expectedStatus(now, last)
	for _, seen := range last {
		if now.Sub(seen) <= time.Hour {
			s.LastHour++
		}
		if now.Sub(seen) <= 24*time.Hour {
			s.LastDay++
		}
	}
	for el := t.lru.Front(); el != nil; el = el.Next() {
		n := el.Value.(*Node)
		if seen := last[n.Addr]; !seen.Equal(n.LastSeen) || now.Sub(seen) <= 24*time.Hour {
			continue
		}
		delete(last, n.Addr) // once per address
		s.QuietCount++
		if len(s.Quiet) < maxListed {
			s.Quiet = append(s.Quiet, *n)
		}
	}
	for _, tag := range slices.Backward(t.order) {
		if len(s.Canaries) >= maxListed {
			break
		}
		s.Canaries = append(s.Canaries, t.tags[tag])
	}
	return s
}

// Seen is how many client addresses were seen within span of now.
func (t *Table) Seen(now time.Time, span time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	addrs := map[netip.Addr]bool{}
	for el := t.lru.Front(); el != nil; el = el.Next() {
		n := el.Value.(*Node)
		if now.Sub(n.LastSeen) > span {
			break // the list is ordered by last seen
		}
		addrs[n.Addr] = true
	}
	return len(addrs)
}
