package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/upstream"
)

// WithPolicy sets the pull policy (default none: every digest is served).
func WithPolicy(set *policy.Set) Option { return func(s *Service) { s.pol.set.Store(set) } }

// SetPolicy replaces the pull policy (SIGHUP). Decisions made under the
// old one are not used again: each digest is decided again at its next
// pull (lazily), and blobs are unlocked again by the manifests allowed
// under the new one.
func (s *Service) SetPolicy(set *policy.Set) {
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	s.pol.set.Store(set)
	clear(s.pol.decisions)
	clear(s.pol.allowed)
}

// Policy is the pull policy in effect (nil: none).
func (s *Service) Policy() *policy.Set { return s.pol.set.Load() }

// Denial is a recent decision that refused a pull (or, in audit mode,
// would have), for /status.
type Denial struct {
	Time       time.Time `json:"time"`
	Upstream   string    `json:"upstream"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag,omitempty"`
	Digest     string    `json:"digest"`
	Decision   string    `json:"decision"` // deny, would_deny
	Rule       string    `json:"rule"`
	Reason     string    `json:"reason"`
	Client     string    `json:"client,omitempty"`
	User       string    `json:"user,omitempty"`
}

// RecentDenials lists the last denials, newest first.
func (s *Service) RecentDenials() []Denial {
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	out := make([]Denial, 0, len(s.pol.denials))
	for i := len(s.pol.denials) - 1; i >= 0; i-- {
		out = append(out, s.pol.denials[i])
	}
	return out
}

// maxDenials bounds the recent denials kept for /status; maxPolicyMemory
// bounds each of the decision, allowed and first-seen maps (a full map is
// emptied: decisions are made again, which costs a lookup, never a wrong
// answer).
const (
	maxDenials      = 20
	maxPolicyMemory = 100_000
)

// policyState is what the content service keeps of the policy's
// decisions.
type policyState struct {
	set atomic.Pointer[policy.Set]
	mu  sync.Mutex
	// decisions are the allowing decisions made under the set in effect
	// (denials are decided again each time: a signature may have been
	// pushed since, and a cooldown ends).
	decisions map[decisionKey]policy.Decision
	// allowed is what an allowed manifest references, by repository:
	// blobs served under it, and platform manifests an allowed index
	// covers.
	allowed map[holdKey]struct{}
	// firstSeen is when this process first decided a digest no tag entry
	// dates (for cooldown).
	firstSeen map[digest.Digest]time.Time
	denials   []Denial
}

type decisionKey struct {
	upstream, repo, tag string
	digest              digest.Digest
}

func newPolicyState() policyState {
	return policyState{decisions: map[decisionKey]policy.Decision{}, allowed: map[holdKey]struct{}{}, firstSeen: map[digest.Digest]time.Time{}}
}

// checkPolicy decides the manifest m, asked by ref under the route, before
// it is served or anything it references is prefetched. Allowed (or served
// in audit mode), what it references is unlocked under the repository;
// denied, the answer is 403 DENIED naming the rule.
func (s *Service) checkPolicy(ctx context.Context, req Request, rt route, ref oci.Reference, m *Manifest) error {
	set := s.pol.set.Load()
	if set == nil {
		return nil
	}
	// Signatures, attestations and SBOMs under cosign's tag scheme are
	// metadata about an image, read by clients that verify for themselves.
	if policy.IsArtifactTag(ref.Tag) || (ref.IsDigest() && s.covered(rt, m.Digest)) {
		s.allow(rt, m)
		return nil
	}
	d, cached := s.decision(ctx, set, rt, ref.Tag, m.Digest)
	if !cached {
		s.report(req, rt, ref.Tag, m.Digest, d)
	}
	if !d.Allow {
		return oci.Errorf(oci.ErrDenied, "denied by the mirror's pull policy (%s): %s", d.Rule, d.Reason)
	}
	s.allow(rt, m)
	return nil
}

// decision is the set's decision for a digest under the route, from
// memory when an earlier pull was allowed under the same set.
func (s *Service) decision(ctx context.Context, set *policy.Set, rt route, tag string, dg digest.Digest) (policy.Decision, bool) {
	k := decisionKey{rt.up.Name, rt.repo, tag, dg}
	s.pol.mu.Lock()
	d, ok := s.pol.decisions[k]
	s.pol.mu.Unlock()
	now := s.now()
	if ok && (d.Until.IsZero() || now.Before(d.Until)) {
		return d, true
	}
	subj := policy.Subject{Upstream: rt.up.Name, Repo: rt.repo, Tag: tag, Digest: dg, FirstSeen: s.firstSeen(rt, tag, dg, now)}
	d = set.Decide(ctx, subj, now, func(ctx context.Context) ([]policy.Signature, error) { return s.signatures(ctx, rt, dg) })
	if d.Verdict == policy.ActionAllow && !d.Unavailable {
		s.pol.mu.Lock()
		if s.pol.set.Load() == set { // not a decision of a replaced set
			if len(s.pol.decisions) >= maxPolicyMemory {
				clear(s.pol.decisions)
			}
			s.pol.decisions[k] = d
		}
		s.pol.mu.Unlock()
	}
	return d, false
}

// firstSeen is when the mirror first saw the digest: the tag's entry
// dates it when the tag points at it (kept in the index, so a restart
// does not start a cooldown again), else the first decision of it in
// this process.
func (s *Service) firstSeen(rt route, tag string, dg digest.Digest, now time.Time) time.Time {
	var dated time.Time
	if tag != "" {
		if e, found, err := s.tag(rt, tag); err == nil && found && e.Digest == dg {
			dated = e.Fetched
		}
	}
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	first, ok := s.pol.firstSeen[dg]
	switch {
	case !dated.IsZero() && (!ok || dated.Before(first)):
		first = dated
	case !ok:
		first = now
	}
	if !ok || first.Before(s.pol.firstSeen[dg]) {
		if len(s.pol.firstSeen) >= maxPolicyMemory {
			clear(s.pol.firstSeen)
		}
		s.pol.firstSeen[dg] = first
	}
	return first
}

// allow unlocks what an allowed manifest references under the route's
// repository: its blobs, and the platform manifests of an index (whose
// signature covers them).
func (s *Service) allow(rt route, m *Manifest) {
	refs := oci.References(m.Body)
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	if len(s.pol.allowed)+len(refs) > maxPolicyMemory {
		clear(s.pol.allowed)
	}
	s.pol.allowed[holdKey{rt.up.Name, rt.repo, m.Digest}] = struct{}{}
	for _, r := range refs {
		s.pol.allowed[holdKey{rt.up.Name, rt.repo, r}] = struct{}{}
	}
}

// covered reports whether a manifest allowed under the route's repository
// references d.
func (s *Service) covered(rt route, d digest.Digest) bool {
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	_, ok := s.pol.allowed[holdKey{rt.up.Name, rt.repo, d}]
	return ok
}

// checkBlobPolicy refuses a blob under a repository the policy gates
// unless a manifest allowed there references it (in audit mode it is
// served and reported).
func (s *Service) checkBlobPolicy(req Request, rt route, d digest.Digest) error {
	set := s.pol.set.Load()
	if !set.Gates(rt.up.Name, rt.repo) || s.covered(rt, d) {
		return nil
	}
	msg := fmt.Sprintf("blob %s is not referenced by a manifest the mirror's pull policy allowed under %s (pull the image's manifest first)", d, rt.repo)
	if set.Mode() == policy.Audit {
		s.log.Warn("pull policy would deny a blob (audit mode: served)", slog.String("upstream", rt.up.Name),
			slog.String("repository", rt.repo), slog.String("digest", d.String()), slog.String("client", req.Client))
		return nil
	}
	return oci.Errorf(oci.ErrDenied, "%s", msg)
}

// report writes a decision's audit line, counts it, and keeps a denial
// for /status.
func (s *Service) report(req Request, rt route, tag string, dg digest.Digest, d policy.Decision) {
	decision := d.Verdict
	if d.Audited() {
		decision = "would_deny"
	}
	if s.metrics != nil && s.metrics.PolicyDecisions != nil {
		s.metrics.PolicyDecisions.WithLabelValues(decision, d.Label).Inc()
	}
	level := slog.LevelInfo
	if decision != policy.ActionAllow {
		level = slog.LevelWarn
	}
	s.log.LogAttrs(context.Background(), level, "pull policy decision",
		slog.String("audit", "policy"), slog.String("client", req.Client), slog.String("user", req.User),
		slog.String("upstream", rt.up.Name), slog.String("repository", rt.repo), slog.String("tag", tag),
		slog.String("digest", dg.String()), slog.String("decision", decision), slog.String("rule", d.Rule),
		slog.String("reason", d.Reason), slog.String("signer", d.Signer))
	if decision == policy.ActionAllow {
		return
	}
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	if len(s.pol.denials) >= maxDenials {
		s.pol.denials = s.pol.denials[1:]
	}
	s.pol.denials = append(s.pol.denials, Denial{Time: s.now().UTC(), Upstream: rt.up.Name, Repository: rt.repo, Tag: tag,
		Digest: dg.String(), Decision: decision, Rule: d.Rule, Reason: d.Reason, Client: req.Client, User: req.User})
}

// maxSignatures bounds the signature layers read for one digest, and
// maxPayload one payload's size.
const (
	maxSignatures = 16
	maxPayload    = 64 << 10
)

// signatures reads a digest's cosign signatures from the manifest tagged
// sha256-<hex>.sig in the route's repository, cached like any tag (its
// manifest and payloads are stored, so the digest verifies again while
// the upstream is down). No such tag is no signature; an upstream that
// cannot be asked, with nothing cached, is an error (on_unavailable).
func (s *Service) signatures(ctx context.Context, rt route, dg digest.Digest) ([]policy.Signature, error) {
	var out Outcome
	m, err := s.manifestByTag(ctx, rt, policy.SignatureTag(dg), func() []string { return accepts(nil) }, &out)
	var we *oci.Error
	switch {
	case err != nil && (upstream.IsNotFound(err) || errors.As(err, &we) && we.Code == oci.ErrManifestUnknown):
		return nil, nil
	case err != nil:
		return nil, err
	}
	mc, err := oci.DecodeContent(m.Body)
	if err != nil {
		return nil, fmt.Errorf("signature manifest %s: %w", m.Digest, err)
	}
	var sigs []policy.Signature
	for _, l := range mc.Layers {
		b64 := l.Annotations[policy.SignatureAnnotation]
		if l.MediaType != policy.SimpleSigningMediaType || b64 == "" || l.Size > maxPayload || len(sigs) == maxSignatures {
			continue
		}
		payload, err := s.readSmallBlob(ctx, rt, l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("signature payload %s: %w", l.Digest, err)
		}
		sigs = append(sigs, policy.Signature{Payload: payload, Base64: b64})
	}
	return sigs, nil
}

// readSmallBlob reads a small blob of the route (a signature payload)
// through its fill, so it is cached like any other blob.
func (s *Service) readSmallBlob(ctx context.Context, rt route, d digest.Digest, size int64) ([]byte, error) {
	rd, err := s.openFill(ctx, rt, d, size, false)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	var buf limitedBuffer
	buf.max = maxPayload
	if err := rd.Send(ctx, &buf, 0, -1); err != nil {
		return nil, err
	}
	return buf.b, nil
}

// limitedBuffer is a bytes buffer that refuses to grow past max.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.b)+len(p) > l.max {
		return 0, fmt.Errorf("more than %d bytes", l.max)
	}
	l.b = append(l.b, p...)
	return len(p), nil
}

// PolicyAnswer is what the policy decides for an image, without a pull.
type PolicyAnswer struct {
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	// Decision is allow or deny (what enforce mode would do); Served says
	// whether the mirror would serve it (audit mode serves a deny).
	Decision string `json:"decision"`
	Served   bool   `json:"served"`
	Mode     string `json:"mode"`
	Rule     string `json:"rule"`
	Reason   string `json:"reason"`
	Signer   string `json:"signer,omitempty"`
}

// PolicyCheck says what the policy decides for an image (by tag or
// digest) and why, as a pull would have it decided: the tag is resolved
// to its digest (from the cache while fresh, else the upstream), and the
// digest decided with its signatures. Nothing is served or prefetched, no
// audit line is written and no metric counted: it is a question, not a
// pull.
func (s *Service) PolicyCheck(ctx context.Context, upstreamName, repo string, ref oci.Reference) (PolicyAnswer, error) {
	req := Request{Upstream: upstreamName, Repo: repo}
	rt, err := s.route(req)
	if err != nil {
		return PolicyAnswer{}, err
	}
	accept := func() []string { return accepts(nil) }
	var out Outcome
	var m *Manifest
	if ref.IsDigest() {
		m, err = s.manifestByDigest(ctx, rt, ref.Digest, accept, &out)
	} else {
		m, err = s.manifestByTag(ctx, rt, ref.Tag, accept, &out)
	}
	if err != nil {
		return PolicyAnswer{}, wire(err, oci.ErrManifestUnknown)
	}
	ans := PolicyAnswer{Upstream: rt.up.Name, Repository: rt.repo, Tag: ref.Tag, Digest: m.Digest.String()}
	set := s.pol.set.Load()
	switch {
	case set == nil:
		ans.Decision, ans.Served, ans.Reason = policy.ActionAllow, true, "no policy is configured"
	case policy.IsArtifactTag(ref.Tag):
		ans.Decision, ans.Served, ans.Reason = policy.ActionAllow, true, "signatures, attestations and SBOMs (cosign's tag scheme) are served without a decision"
	case ref.IsDigest() && s.covered(rt, m.Digest):
		ans.Decision, ans.Served, ans.Reason = policy.ActionAllow, true, "an allowed index under this repository lists it"
	default:
		d, _ := s.decision(ctx, set, rt, ref.Tag, m.Digest)
		ans.Decision, ans.Served, ans.Rule, ans.Reason, ans.Signer = d.Verdict, d.Allow, d.Rule, d.Reason, d.Signer
	}
	ans.Mode = set.Mode()
	return ans, nil
}
