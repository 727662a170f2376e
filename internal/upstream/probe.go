package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Probe states.
const (
	ProbeUnknown = "unknown" // not probed yet, and no request has answered
	ProbeUp      = "up"
	ProbeDown    = "down"
)

// ProbeState is what the health probes (and the requests between them)
// last learnt of the upstream's registry host.
type ProbeState struct {
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"` // why it is down
	Since     time.Time `json:"since,omitzero"`   // when State last changed
	LastProbe time.Time `json:"lastProbe,omitzero"`
	NextProbe time.Time `json:"nextProbe,omitzero"` // while WatchHealth runs
	// Interval is how often WatchHealth probes an idle upstream; 0 while
	// no WatchHealth runs (probe_interval 0).
	Interval time.Duration `json:"interval,omitempty"`
}

// prober holds the probe state. A request that the registry answers counts
// as a successful probe; one that fails does not count against it (the
// breakers judge those), so one bad request never marks the upstream down.
type prober struct {
	mu         sync.Mutex
	st         ProbeState
	lastAnswer time.Time // the last answer from the registry host, probe or request
}

func (p *prober) state() ProbeState {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	if st.State == "" {
		st.State = ProbeUnknown
	}
	return st
}

// set records a verdict; it returns the state before.
func (p *prober) set(now time.Time, up bool, reason string, probed bool) (before ProbeState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	before = p.st
	state := ProbeDown
	if up {
		state, reason = ProbeUp, ""
		p.lastAnswer = now
	}
	if probed {
		p.st.LastProbe = now
		if p.st.Interval > 0 { // WatchHealth runs: the next probe, in the same step (it refines it)
			p.st.NextProbe = now.Add(p.st.Interval)
		}
	}
	if p.st.State != state {
		p.st.State, p.st.Since = state, now
	}
	p.st.Reason = reason
	return before
}

// Probe asks the registry's /v2/ once, without credentials and outside the
// retries and rate-limit hold-backs: it is never a counted pull. Any
// answer below 500 (a 401 challenge is the usual one) means up. The result
// is recorded in Health().Probe. While the configured credentials are not
// known good (at start, or refused), it also asks for a token of no
// repository with them (Health().Credentials), so a refusal shows before
// any pull and a fixed password file clears it without one.
func (c *Client) Probe(ctx context.Context) error {
	if c.Sealed() {
		return nil // never contacted: neither up nor down
	}
	v2, err := c.ping(ctx)
	if err == nil {
		before := c.auth.Verdict()
		if cerr := c.auth.CheckCredentials(ctx, v2); cerr != nil {
			c.log.Warn("upstream credentials check failed", slog.String("upstream", c.name), slog.Any("error", cleanURLError(cerr)))
		}
		switch after := c.auth.Verdict(); {
		case after.Rejected && (!before.Rejected || after.Reason != before.Reason):
			c.log.Error("upstream refuses the configured credentials: pulls through it fail", slog.String("upstream", c.name), slog.String("reason", after.Reason))
		case before.Rejected && !after.Rejected:
			c.log.Info("upstream accepts the configured credentials again", slog.String("upstream", c.name))
		}
	}
	now := c.now()
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	before := c.probe.set(now, err == nil, reason, true)
	switch {
	case err != nil && before.State != ProbeDown:
		c.log.Warn("upstream probe failed: marked unreachable (cached content is served stale; uncached pulls fail)",
			slog.String("upstream", c.name), slog.Any("error", err))
	case err == nil && before.State == ProbeDown:
		c.log.Info("upstream probe answered: marked up again", slog.String("upstream", c.name),
			slog.Duration("down_for", now.Sub(before.Since)))
	}
	return err
}

// ping is GET /v2/ on the base transport: no breaker, no token, no retry.
// The answer (its body closed) carries the challenge, if any.
func (c *Client) ping(ctx context.Context) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	u := *c.base
	u.Path = "/v2/"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.baseTransport.RoundTrip(req)
	if err != nil {
		return nil, cleanURLError(err)
	}
	drainBody(resp)
	if resp.StatusCode >= 500 {
		return nil, fmt.Errorf("GET /v2/ answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return resp, nil
}

// answered records that the registry host answered a request: evidence of
// health as good as a probe.
func (c *Client) answered() {
	if before := c.probe.set(c.now(), true, "", false); before.State == ProbeDown {
		c.log.Info("upstream answered a request: marked up again", slog.String("upstream", c.name))
	}
}

// WatchHealth probes the upstream at once and then whenever it has been
// idle (no answer from it) for every, until ctx ends. A busy upstream is
// not probed: its answers say it is up.
func (c *Client) WatchHealth(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	c.probe.mu.Lock()
	c.probe.st.Interval = every
	c.probe.mu.Unlock()
	for {
		_ = c.Probe(ctx)
		for {
			c.probe.mu.Lock()
			next := c.probe.st.LastProbe.Add(every)
			if idleSince := c.probe.lastAnswer.Add(every); c.probe.st.State == ProbeUp && idleSince.After(next) && !c.auth.Verdict().Rejected {
				next = idleSince
			}
			c.probe.st.NextProbe = next
			c.probe.mu.Unlock()
			wait := next.Sub(c.now())
			if wait <= 0 {
				break
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// resetOf is when the budget of the reading now comes back: the
// upstream's ratelimit-reset (seconds from now) if given, else the start
// of the current window plus the window. A window starts at the first
// reading, after the last reset passed, or when remaining went up (the
// budget came back).
func resetOf(prev, now RateLimit, header string) (time.Time, bool) {
	if secs, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(header, ";", 2)[0])); err == nil && secs >= 0 {
		return now.Updated.Add(time.Duration(secs) * time.Second), false
	}
	win, err := strconv.Atoi(now.Window)
	if err != nil || win <= 0 {
		return time.Time{}, false
	}
	if !prev.Reset.IsZero() && prev.ResetEstimated && now.Updated.Before(prev.Reset) && now.Remaining <= prev.Remaining {
		return prev.Reset, true
	}
	return now.Updated.Add(time.Duration(win) * time.Second), true
}
