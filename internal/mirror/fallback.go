package mirror

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/upstream"
)

// Kinds of request a fallback member may answer, for the log, the
// metrics (a closed label set) and /status.
type fallbackKind string

const (
	fallbackManifest fallbackKind = "manifest" // a manifest by digest (checked against it)
	fallbackTag      fallbackKind = "tag"      // a manifest by tag: members trusted for tags only
	fallbackBlob     fallbackKind = "blob"     // a blob or its HEAD (checked against the digest)
)

// fallsBack reports whether a failure of an upstream sends the request on
// to the next member of its fallback chain: the upstream is down (a
// refused or timed-out connection, an open breaker), answered 5xx, or is
// rate limited (a 429, or its Retry-After still running). A 404, 401 or
// 403 is the upstream's own answer and is not overruled; nor is the
// mirror's own refusal (an *oci.Error: the budget reserve kept from
// background work), which no upstream gave.
func fallsBack(err error) bool {
	var we *oci.Error
	if errors.As(err, &we) {
		return false
	}
	c, _ := upstream.Classify(err)
	return c == upstream.Down || c == upstream.RateLimited
}

// fallbacks lists the members of an upstream's chain, in order.
func (s *Service) fallbacks(u *Upstream) []*Upstream {
	var out []*Upstream
	for _, name := range u.Fallback {
		if m := s.byName[strings.ToLower(name)]; m != nil && m != u {
			out = append(out, m)
		}
	}
	return out
}

// onChain runs fn for the route and, when that fails as fallsBack says,
// for the same repository on each member of the upstream's fallback chain
// in turn (for a tag, only members trusted for tags), until one answers.
// It returns the route that answered, or the upstream's own error.
func (s *Service) onChain(ctx context.Context, rt route, kind fallbackKind, fn func(route) error) (route, error) {
	err := fn(rt)
	if err == nil || ctx.Err() != nil || !fallsBack(err) {
		return rt, err
	}
	for _, m := range s.fallbacks(rt.up) {
		if kind == fallbackTag && !m.TrustedTags {
			continue
		}
		mrt := route{up: m, repo: rt.repo}
		ferr := fn(mrt)
		s.noteFallback(rt, m, kind, err, ferr)
		if ferr == nil {
			return mrt, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return rt, err
}

// noteFallback logs, counts and remembers a request tried on a member.
func (s *Service) noteFallback(rt route, m *Upstream, kind fallbackKind, cause, err error) {
	result := "served"
	if err != nil {
		result = "failed"
	}
	if s.metrics != nil {
		s.metrics.Fallbacks.WithLabelValues(rt.up.Name, m.Name, string(kind), result).Inc()
	}
	attrs := []any{slog.String("upstream", rt.up.Name), slog.String("member", m.Name), slog.String("kind", string(kind)),
		slog.String("repository", rt.repo), slog.String("cause", cause.Error()), slog.String("cause_class", causeClass(cause))}
	if err != nil {
		s.log.Warn("fallback member failed too", append(attrs, slog.Any("error", err))...)
	} else {
		s.log.Warn("upstream failed; answered by a member of its fallback chain", attrs...)
	}
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	st := s.fbStats[rt.up.Name]
	if st == nil {
		st = &FallbackState{}
		s.fbStats[rt.up.Name] = st
	}
	if err == nil {
		st.Served++
	} else {
		st.Failed++
	}
	st.Last, st.LastMember, st.LastKind, st.LastCause = s.now(), m.Name, string(kind), cause.Error()
}

// FallbackState is what an upstream's fallback chain did, for /status.
type FallbackState struct {
	Chain       []string  `json:"chain,omitempty"`
	TrustedTags bool      `json:"trustedTags"` // the upstream's own answers stand in for tags when it is a member
	Served      int64     `json:"served"`      // requests a member answered
	Failed      int64     `json:"failed"`      // requests a member failed too
	Last        time.Time `json:"last,omitzero"`
	LastMember  string    `json:"lastMember,omitempty"`
	LastKind    string    `json:"lastKind,omitempty"`
	LastCause   string    `json:"lastCause,omitempty"` // the upstream's failure that sent it there
}

// Fallback reports an upstream's chain and what it answered so far.
func (s *Service) Fallback(u *Upstream) FallbackState {
	s.fbMu.Lock()
	defer s.fbMu.Unlock()
	var st FallbackState
	if p := s.fbStats[u.Name]; p != nil {
		st = *p
	}
	st.Chain, st.TrustedTags = u.Fallback, u.TrustedTags
	return st
}

// originAmong reports whether one of ups served d's verified bytes.
func (s *Service) originAmong(ctx context.Context, ups []*Upstream, d digest.Digest) (bool, error) {
	for _, u := range ups {
		if s.mem.isOrigin(u.Name, d) {
			return true, nil
		}
		ok, err := s.index.HasOrigin(ctx, u.Name, d)
		if err != nil {
			return false, err
		}
		if ok {
			s.mem.putOrigin(u.Name, d)
			return true, nil
		}
	}
	return false, nil
}

// fbState guards the fallback counters.
type fbState struct {
	fbMu    sync.Mutex
	fbStats map[string]*FallbackState
}

// causeClass names what the upstream's failure was (down, rate-limited).
func causeClass(err error) string {
	c, _ := upstream.Classify(err)
	return c.String()
}
