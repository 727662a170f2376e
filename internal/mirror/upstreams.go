package mirror

import "log/slog"

// Upstreams are the mirror's upstreams, in the configuration's order.
type Upstreams []*Upstream

// Down names the upstreams down or rate limited now: what their tags
// reach may be the only copy.
func (us Upstreams) Down() map[string]bool {
	down := map[string]bool{}
	for _, u := range us {
		if h := u.Client.Health(); h.Down || !h.LimitedUntil.IsZero() {
			down[u.Name] = true
		}
	}
	return down
}

// AllSealed reports that every upstream's client is sealed (the sealed
// setting as the clients hold it).
func (us Upstreams) AllSealed() bool {
	for _, u := range us {
		if !u.Client.Sealed() {
			return false
		}
	}
	return len(us) > 0
}

// Seal seals or unseals each client in place as want says of its index,
// and says in log what each change means.
func (us Upstreams) Seal(want func(i int) bool, log *slog.Logger) {
	for i, u := range us {
		if w := want(i); u.Client.Sealed() != w {
			u.Client.SetSealed(w)
			LogSealed(log, u.Name, w)
		}
	}
}

// LogSealed says, at start-up and on each change, what a seal means.
func LogSealed(log *slog.Logger, name string, sealed bool) {
	if sealed {
		log.Warn("upstream sealed: never contacted; cached content is served, misses are answered 404 (or 503: sealed_miss_status) and listed in /status",
			slog.String("upstream", name))
		return
	}
	log.Info("upstream unsealed: pulls reach it again", slog.String("upstream", name))
}
