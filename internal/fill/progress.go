package fill

import (
	"slices"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
)

// Progress is one running fill, for the dashboard and the metrics.
type Progress struct {
	Digest  digest.Digest
	Origin  string // the upstream asked (as given to OpenFrom); "" for Open
	Written int64  // bytes written so far
	Size    int64  // the blob's length, -1 until known
	Readers int    // clients reading the growing file
	Started time.Time
}

// Progress lists the running fills, oldest first.
func (m *Manager) Progress() []Progress {
	m.mu.Lock()
	fills := make([]*Fill, 0, len(m.fills))
	for _, f := range m.fills {
		fills = append(fills, f)
	}
	m.mu.Unlock()
	out := make([]Progress, 0, len(fills))
	for _, f := range fills {
		f.mu.Lock()
		// refs: the run goroutine holds one; a prefetch gave its back.
		out = append(out, Progress{Digest: f.d, Origin: f.key.origin, Written: f.written, Size: f.size,
			Readers: max(f.refs-1, 0), Started: f.started})
		f.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Progress) int { return a.Started.Compare(b.Started) })
	return out
}

// Totals are counts over the manager's life.
type Totals struct {
	Committed int64 // fills whose blob was verified and stored
	Failed    int64 // fills that ended with an error (not the ones another upstream's commit superseded)
	// Fetched is the body bytes received from upstreams, by origin (failed
	// fills' bytes included: they were fetched all the same).
	Fetched map[string]int64
}

// counters are the manager's totals; the origin set is the caller's
// upstream names, a closed set.
type counters struct {
	committed, failed atomic.Int64
	fetched           syncMap
}

// Totals returns the counts so far.
func (m *Manager) Totals() Totals {
	return Totals{Committed: m.counts.committed.Load(), Failed: m.counts.failed.Load(), Fetched: m.counts.fetched.snapshot()}
}
