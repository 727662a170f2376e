package fleet

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// maxExpectedFile bounds an address file as read.
const maxExpectedFile = 16 << 20

// LoadExpected turns fleet.expected into networks: each entry is a
// network (CIDR) or an address, else a file of them, one a line (blank
// lines and # comments skipped). Addresses become single-address networks.
func LoadExpected(entries []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, e := range entries {
		if p, ok := parseNetwork(e); ok {
			out = append(out, p)
			continue
		}
		ps, err := readExpectedFile(e)
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out), nil
}

func parseNetwork(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

func readExpectedFile(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fleet.expected: %w", err)
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(io.LimitReader(f, maxExpectedFile))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		p, ok := parseNetwork(line)
		if !ok {
			return nil, fmt.Errorf("fleet.expected: %s line %d: %q is not an address or a network (CIDR)", path, n, line)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fleet.expected: read %s: %w", path, err)
	}
	return out, nil
}

// SetExpected replaces the networks of the nodes expected to pull through
// the mirror (LoadExpected); nil turns the check off.
func (t *Table) SetExpected(ps []netip.Prefix) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expected = slices.Clone(ps)
}

// Expected is the networks SetExpected set.
func (t *Table) Expected() []netip.Prefix {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.expected)
}

// ExpectedStatus is the fleet.expected check.
type ExpectedStatus struct {
	// Addresses and Networks are how many single addresses and wider
	// networks are expected.
	Addresses int `json:"addresses"`
	Networks  int `json:"networks"`
	// NeverSeen lists the expected addresses the table does not know (at
	// most maxListed; NeverSeenCount counts them all). A node dropped from
	// the bounded table counts as never seen.
	NeverSeenCount int          `json:"neverSeenCount"`
	NeverSeen      []netip.Addr `json:"neverSeen"`
	// InNetworks is, per expected network, how many of its addresses were
	// seen in the last day (a network's addresses are not listed: most of
	// them may be no node).
	InNetworks []NetworkSeen `json:"inNetworks"`
	// Unexpected is how many addresses seen in the last day are in no
	// expected address or network.
	Unexpected int `json:"unexpected"`
}

// NetworkSeen is one expected network's count.
type NetworkSeen struct {
	Network netip.Prefix `json:"network"`
	LastDay int          `json:"lastDay"`
}

// expectedStatus is the check against last (each known address's last
// seen time); t.mu is held.
func (t *Table) expectedStatus(now time.Time, last map[netip.Addr]time.Time) *ExpectedStatus {
	if len(t.expected) == 0 {
		return nil
	}
	es := &ExpectedStatus{NeverSeen: []netip.Addr{}, InNetworks: []NetworkSeen{}}
	singles := map[netip.Addr]bool{}
	var networks []netip.Prefix
	for _, p := range t.expected {
		if p.IsSingleIP() {
			singles[p.Addr()] = true
			es.Addresses++
			if _, ok := last[p.Addr()]; !ok {
				es.NeverSeenCount++
				if len(es.NeverSeen) < maxListed {
					es.NeverSeen = append(es.NeverSeen, p.Addr())
				}
			}
			continue
		}
		es.Networks++
		networks = append(networks, p)
		ns := NetworkSeen{Network: p}
		for a, seen := range last {
			if p.Contains(a) && now.Sub(seen) <= 24*time.Hour {
				ns.LastDay++
			}
		}
		if len(es.InNetworks) < maxListed {
			es.InNetworks = append(es.InNetworks, ns)
		}
	}
	for a, seen := range last {
		if now.Sub(seen) <= 24*time.Hour && !singles[a] && !slices.ContainsFunc(networks, func(p netip.Prefix) bool { return p.Contains(a) }) {
			es.Unexpected++
		}
	}
	return es
}
