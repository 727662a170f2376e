package auth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Verdict is what the upstream last said of the configured credentials.
// An anonymous Transport never has one: a 401 for a repository it may not
// read is an answer about that repository, not about credentials.
type Verdict struct {
	// Rejected is set while the token endpoint (or, with Basic auth, the
	// registry) refuses the configured credentials, or they cannot be read.
	Rejected bool      `json:"rejected"`
	Reason   string    `json:"reason,omitempty"`
	Since    time.Time `json:"since,omitzero"` // when Rejected last changed
	// Checked is when the credentials were last judged; zero before.
	Checked time.Time `json:"checked,omitzero"`
}

// Verdict reports what the upstream last said of the credentials.
func (t *Transport) Verdict() Verdict {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.verdict
}

// judged records a verdict on the configured credentials.
func (t *Transport) judged(accepted bool, reason string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.verdict.Rejected == accepted || t.verdict.Checked.IsZero() {
		t.verdict.Since = now
	}
	t.verdict.Rejected, t.verdict.Checked = !accepted, now
	t.verdict.Reason = ""
	if !accepted {
		t.verdict.Reason = reason
	}
}

// noteBasic judges Basic credentials by the registry's answer to a request
// that carried them: 401 refuses them, 2xx accepts them (a 403 is about the
// repository).
func (t *Transport) noteBasic(authz string, resp *http.Response) {
	if !strings.HasPrefix(authz, "Basic ") || resp == nil {
		return
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		t.judged(false, fmt.Sprintf("the registry answered %d to the configured username and password", resp.StatusCode))
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		t.judged(true, "")
	}
}

// noteToken judges credentials by the token endpoint's answer to a request
// that carried them: 401 refuses them, and so does 403 for a token of no
// repository (a 403 for one repository is about that repository); 200
// accepts them.
func (t *Transport) noteToken(realm string, scope string, status int) {
	switch {
	case status == http.StatusOK:
		t.judged(true, "")
	case status == http.StatusUnauthorized || (status == http.StatusForbidden && scope == ""):
		t.judged(false, fmt.Sprintf("token endpoint %s answered %d to the configured credentials", realm, status))
	}
}

// CheckCredentials asks the upstream whether the configured credentials
// are good, when that is not known yet or they were last refused: a token
// for no repository (never a counted pull), or GET /v2/ with Basic auth.
// v2 is the registry's answer to an anonymous GET /v2/ (body closed), whose
// challenge says how.
// It does nothing for an anonymous Transport or credentials known good;
// the requests that carry them keep the verdict fresh. The error is the
// check's own failure (the upstream unreachable), not a refusal: that is
// in Verdict.
func (t *Transport) CheckCredentials(ctx context.Context, v2 *http.Response) error {
	if v := t.Verdict(); !v.Checked.IsZero() && !v.Rejected {
		return nil
	}
	creds, err := t.credentials()
	if err != nil {
		return nil // credentials() recorded it
	}
	if creds.empty() {
		return nil
	}
	c, ok := challengeOf(v2)
	switch {
	case v2.StatusCode != http.StatusUnauthorized || !ok:
		return nil // no challenge: the credentials are never asked for
	case c.scheme == "basic":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, v2.Request.URL.String(), nil)
		if err != nil {
			return err
		}
		authz, err := t.authorization(ctx, c, "", "")
		if err != nil {
			return err
		}
		resp, err := t.send(req, authz)
		if err != nil {
			return err
		}
		drain(resp)
		t.noteBasic(authz, resp)
		return nil
	}
	if _, err = t.fetchToken(ctx, c, ""); err != nil && t.Verdict().Rejected {
		return nil // a refusal, recorded
	}
	return err
}
