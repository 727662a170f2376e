package mirror

import (
	"math"
	"time"

	"github.com/regcache/regcache/internal/rules"
)

// WithRules sets the per-repository rules (default none).
func WithRules(set *rules.Set) Option { return func(s *Service) { s.rules.Store(set) } }

// SetRules replaces the rules (SIGHUP): each request reads the set in
// effect once, so it never mixes two.
func (s *Service) SetRules(set *rules.Set) { s.rules.Store(set) }

// Rules is the rule set in effect (nil: none).
func (s *Service) Rules() *rules.Set { return s.rules.Load() }

// neverStale is the freshness of an immutable tag: never revalidated.
const neverStale = time.Duration(math.MaxInt64)

// tagFreshness is how long the route's tag is served without asking
// upstream, by the first rule matching it, else the global freshness;
// the rule is returned for the response's X-Regcache-Rule. A sealed
// upstream's tags never go stale: it is never asked.
func (s *Service) tagFreshness(rt route, tag string) (time.Duration, rules.Applied, bool) {
	a, ok := s.rules.Load().Match(rt.up.Name, rt.repo, tag)
	switch {
	case rt.up.Client != nil && rt.up.Client.Sealed():
		return neverStale, a, ok
	case ok && a.Immutable:
		return neverStale, a, ok
	case ok && a.Freshness != nil:
		return *a.Freshness, a, ok
	}
	return s.freshness, a, ok
}
