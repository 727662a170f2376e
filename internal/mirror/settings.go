package mirror

import "time"

// Settings are the knobs the content service runs with, as it holds
// them: /status shows them, so what is in effect is read from the running
// part, not from the configuration it was built from.
type Settings struct {
	Freshness        time.Duration `json:"freshness"`
	NegativeTTL      time.Duration `json:"negativeTTL"`
	Prefetch         bool          `json:"prefetch"`
	PrefetchParallel int           `json:"prefetchParallel"`
	ReserveCount     int           `json:"reserveCount,omitempty"`
	ReservePercent   float64       `json:"reservePercent,omitempty"`
}

// Settings reports the service's knobs.
func (s *Service) Settings() Settings {
	return Settings{Freshness: s.freshness, NegativeTTL: s.negativeTTL, Prefetch: s.prefetch, PrefetchParallel: cap(s.prefetchSem),
		ReserveCount: s.reserveCount, ReservePercent: s.reservePercent}
}
