package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"github.com/regcache/regcache/internal/oci"
)

// BackgroundHeader is oci.BackgroundHeader, under the name the mirror's
// messages use.
const BackgroundHeader = oci.BackgroundHeader

// WithBudgetReserve sets how many counted pulls (manifest GETs) background
// work leaves to other clients: count when more than 0, else percent of
// the upstream's last reported ratelimit-limit (default 10%).
func WithBudgetReserve(count int, percent float64) Option {
	return func(s *Service) { s.reserveCount, s.reservePercent = count, percent }
}

type backgroundKey struct{}

// background marks ctx as background work's (a warm request's).
func background(ctx context.Context) context.Context {
	return context.WithValue(ctx, backgroundKey{}, true)
}

func isBackground(ctx context.Context) bool {
	v, _ := ctx.Value(backgroundKey{}).(bool)
	return v
}

// Reserve is the number of counted pulls background work leaves to other
// clients of the upstream, from its last reported ratelimit-limit; 0 when
// the upstream never sent one.
func (s *Service) Reserve(u *Upstream) int {
	if s.reserveCount > 0 {
		return s.reserveCount
	}
	lim := u.Client.RateLimit().Limit
	if lim <= 0 {
		return 0
	}
	return int(math.Ceil(float64(lim) * s.reservePercent / 100))
}

// keepReserve refuses a counted pull for background work when the
// upstream's remaining budget is down to the reserve: a 429 with a
// Retry-After (an estimate: the window's share of the pulls to wait for)
// and a message saying the rest is kept for other clients.
func (s *Service) keepReserve(ctx context.Context, rt route) error {
	if !isBackground(ctx) {
		return nil
	}
	rl := rt.up.Client.RateLimit()
	reserve := s.Reserve(rt.up)
	if rl.Limit <= 0 || reserve <= 0 || rl.Remaining > reserve {
		return nil
	}
	window := time.Duration(0)
	if secs, err := strconv.Atoi(rl.Window); err == nil && secs > 0 {
		window = time.Duration(secs) * time.Second
	}
	if window > 0 && time.Since(rl.Updated) > window {
		return nil // the whole window passed since the upstream last said: renewed
	}
	wait := time.Minute
	if window > 0 {
		wait = min(max(window/time.Duration(rl.Limit)*time.Duration(reserve-rl.Remaining+1), time.Second), window)
	}
	if s.metrics != nil {
		s.metrics.ReserveRefusals.WithLabelValues(rt.up.Name).Inc()
	}
	s.log.Info("background pull refused: the rest of the upstream's pull budget is kept for other clients",
		slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.Int("remaining", rl.Remaining), slog.Int("reserve", reserve))
	return &oci.Error{Code: oci.ErrTooManyRequests, RetryAfter: strconv.Itoa(int(wait.Seconds())),
		Message: fmt.Sprintf("upstream %s has %d of %d counted pulls left; the last %d (budget_reserve) are kept for other clients, so background pulls (%s: 1) wait; pulls without that header still go on",
			rt.up.Name, rl.Remaining, rl.Limit, reserve, BackgroundHeader)}
}
