package admin

import (
	"testing"
	"time"

	"github.com/regcache/regcache/internal/upstream"
)

// TestUpstreamState: the worst condition names the state, with its
// reason, since and next probe (which of them make the mirror degraded is
// problems', tested through /status).
func TestUpstreamState(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	since, next := now.Add(-time.Minute), now.Add(time.Second)
	up := upstream.ProbeState{State: upstream.ProbeUp, Since: since, NextProbe: next}
	tests := []struct {
		name          string
		h             upstream.Health
		state, reason string
		since, next   time.Time
	}{
		{"not probed", upstream.Health{Probe: upstream.ProbeState{State: upstream.ProbeUnknown}}, StateUnknown, "", time.Time{}, time.Time{}},
		{"up", upstream.Health{Probe: up}, StateUp, "", since, next},
		{"probe failed", upstream.Health{Probe: upstream.ProbeState{State: upstream.ProbeDown, Reason: "connection refused", Since: since, NextProbe: next}},
			StateStaleServing, "connection refused", since, next},
		{"manifests breaker", upstream.Health{Probe: up, Breakers: []upstream.BreakerState{{Scope: "manifests", Open: true, LastError: "503", Since: since, NextProbe: next}}},
			StateStaleServing, "503", since, next},
		{"cdn breaker", upstream.Health{Probe: up, Breakers: []upstream.BreakerState{{Scope: "blobs"}, {Scope: "cdn x.example", Open: true, LastError: "reset", Since: since, NextProbe: next}}},
			StateBreakerOpen, "reset", since, next},
		{"429", upstream.Health{Probe: up, LimitedUntil: now.Add(time.Minute), Limited: []upstream.LimitState{{Kind: upstream.KindManifestGet, Until: now.Add(time.Minute)}}},
			StateRateLimited, "429 for manifest GET", time.Time{}, now.Add(time.Minute)},
		{"down beats 429", upstream.Health{Probe: upstream.ProbeState{State: upstream.ProbeDown, Reason: "timeout", Since: since}, LimitedUntil: now.Add(time.Minute)},
			StateStaleServing, "timeout", since, time.Time{}},
	}
	for _, tt := range tests {
		state, text, reason, s, n := upstreamState(tt.h, now)
		if state != tt.state || reason != tt.reason || !s.Equal(tt.since) || !n.Equal(tt.next) || text == "" {
			t.Errorf("%s: %q %q %q %v %v, want %q %q %v %v", tt.name, state, text, reason, s, n, tt.state, tt.reason, tt.since, tt.next)
		}
	}
}
