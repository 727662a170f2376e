package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

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
	s.pol.decisions.Clear()
	s.pol.decided.Store(0)
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
	s.pol.mu.RLock()
	defer s.pol.mu.RUnlock()
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
	mu  sync.RWMutex
	// decisions are the allowing decisions made under the set in effect
	// (denials are decided again each time: a signature may have been
	// pushed since, and a cooldown ends), decisionKey to policy.Decision:
	// a sync.Map, read without a lock on every warm hit. A decision is
	// kept only once its manifest's references are in allowed, and both
	// are emptied together, so a kept decision needs nothing else.
	decisions sync.Map
	decided   atomic.Int64 // entries in decisions
	// allowed is what an allowed manifest references, by repository:
	// blobs served under it, and platform manifests an allowed index
	// covers; true for a manifest whose references were added too.
	allowed map[holdKey]bool
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
	return policyState{allowed: map[holdKey]bool{}, firstSeen: map[digest.Digest]time.Time{}}
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
	// Signatures, attestations and SBOMs (cosign's tag scheme, or a
	// referrer of another manifest) are metadata about an image, read by
	// clients that verify for themselves.
	if _, ok := s.cachedDecision(rt, ref.Tag, m.Digest); ok { // the warm path: allowed before, references unlocked
		return nil
	}
	if policy.IsReferrersTag(ref.Tag) && referrersIndex(m) {
		return nil // a list of signatures: each is decided (or waved) when pulled, nothing unlocked here
	}
	if metadataArtifact(ref, m) || (ref.IsDigest() && s.covered(rt, m.Digest)) {
		s.allow(set, rt, m)
		return nil
	}
	d, cached := s.decision(ctx, set, rt, ref.Tag, m.Digest)
	if !cached {
		s.report(req, rt, ref.Tag, m.Digest, d)
	}
	if !d.Allow {
		return oci.Errorf(oci.ErrDenied, "denied by the mirror's pull policy (%s): %s", d.Rule, d.Reason)
	}
	s.allow(set, rt, m)
	if d.Verdict == policy.ActionAllow && !d.Unavailable {
		s.keepDecision(set, decisionKey{rt.up.Name, rt.repo, ref.Tag, m.Digest}, d)
	}
	return nil
}

// keepDecision keeps an allow made under set, unless set was replaced
// meanwhile (SIGHUP).
func (s *Service) keepDecision(set *policy.Set, k decisionKey, d policy.Decision) {
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	if s.pol.set.Load() != set {
		return
	}
	if s.pol.decided.Load() >= maxPolicyMemory {
		s.pol.decisions.Clear()
		s.pol.decided.Store(0)
	}
	if _, loaded := s.pol.decisions.LoadOrStore(k, d); !loaded {
		s.pol.decided.Add(1)
	}
}

// metadataArtifact reports a manifest that is metadata about another one
// (a signature, an attestation, an SBOM), served without a decision: it
// is tagged in cosign's scheme or refers to a subject, and it is no
// runnable image (not an index, no filesystem layer), so naming a tag
// sha256-<hex>.sig cannot carry an image past the policy.
func metadataArtifact(ref oci.Reference, m *Manifest) bool {
	mc, err := oci.DecodeContent(m.Body)
	if err != nil || mc.IsIndexOf(m.MediaType) || (!policy.IsArtifactTag(ref.Tag) && mc.Subject == nil) {
		return false
	}
	for _, l := range append(mc.Layers, mc.Blobs...) {
		if strings.Contains(l.MediaType, "tar") || strings.Contains(l.MediaType, "rootfs") {
			return false
		}
	}
	return true
}

// referrersIndex reports an index of the referrers tag schema: every entry
// an artifact (an artifact type, no platform), none of them an image an
// engine would pick.
func referrersIndex(m *Manifest) bool {
	mc, err := oci.DecodeContent(m.Body)
	if err != nil || !mc.IsIndexOf(m.MediaType) {
		return false
	}
	for _, d := range mc.Manifests {
		if d.ArtifactType == "" || d.Platform != nil {
			return false
		}
	}
	return true
}

// decision is the set's decision for a digest under the route, from
// memory when an earlier pull was allowed under the same set.
func (s *Service) decision(ctx context.Context, set *policy.Set, rt route, tag string, dg digest.Digest) (policy.Decision, bool) {
	if d, ok := s.cachedDecision(rt, tag, dg); ok {
		return d, true
	}
	now := s.now()
	subj := policy.Subject{Upstream: rt.up.Name, Repo: rt.repo, Tag: tag, Digest: dg, FirstSeen: s.firstSeen(ctx, rt, tag, dg, now)}
	d := set.Decide(ctx, subj, now, func(ctx context.Context) ([]policy.Signature, error) { return s.signatures(ctx, rt, dg) })
	return d, false
}

// cachedDecision is an allowing decision made for the digest under the
// policy in effect, if there is one.
func (s *Service) cachedDecision(rt route, tag string, dg digest.Digest) (policy.Decision, bool) {
	v, ok := s.pol.decisions.Load(decisionKey{rt.up.Name, rt.repo, tag, dg})
	if !ok {
		return policy.Decision{}, false
	}
	return v.(policy.Decision), true
}

// firstSeen is when the mirror first saw the digest: the tag's entry
// dates it when the tag points at it (kept in the index, so a restart
// does not start a cooldown again), else the first decision of it in
// this process.
func (s *Service) firstSeen(ctx context.Context, rt route, tag string, dg digest.Digest, now time.Time) time.Time {
	var dated time.Time
	if tag != "" {
		if e, found, err := s.tag(ctx, rt, tag); err == nil && found && e.Digest == dg {
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

// allow unlocks what a manifest allowed under set references under the
// route's repository: its blobs, and the platform manifests of an index
// (whose signature covers them).
func (s *Service) allow(set *policy.Set, rt route, m *Manifest) {
	k := holdKey{rt.up.Name, rt.repo, m.Digest}
	s.pol.mu.RLock()
	done := s.pol.allowed[k]
	s.pol.mu.RUnlock()
	if done { // the warm path: its references are unlocked already
		return
	}
	refs := oci.References(m.Body)
	s.pol.mu.Lock()
	defer s.pol.mu.Unlock()
	if s.pol.set.Load() != set { // replaced since the decision (SIGHUP): decided again at the next pull
		return
	}
	if len(s.pol.allowed)+len(refs) > maxPolicyMemory {
		clear(s.pol.allowed)
		s.pol.decisions.Clear() // a kept decision says its references are here
		s.pol.decided.Store(0)
	}
	for _, r := range refs {
		if !s.pol.allowed[holdKey{rt.up.Name, rt.repo, r}] {
			s.pol.allowed[holdKey{rt.up.Name, rt.repo, r}] = false
		}
	}
	s.pol.allowed[k] = true
}

// covered reports whether a manifest allowed under the route's repository
// references d.
func (s *Service) covered(rt route, d digest.Digest) bool {
	s.pol.mu.RLock()
	defer s.pol.mu.RUnlock()
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
			slog.String("repository", rt.repo), slog.String("digest", d.String()), slog.String("client", req.Client.String()))
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
		slog.String("audit", "policy"), slog.String("client", req.Client.String()), slog.String("user", req.User),
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
		Digest: dg.String(), Decision: decision, Rule: d.Rule, Reason: d.Reason, Client: req.Client.String(), User: req.User})
}

// maxSignatures bounds the signatures read for one digest, maxReferrers
// the referrer manifests read to find them, and maxPayload one payload's
// (envelope's, bundle's) size.
const (
	maxSignatures = 16
	maxReferrers  = 32 // signature referrers read for one digest
	maxPayload    = 64 << 10
)

// signatures reads a digest's signatures: cosign's from both places cosign
// keeps them, the manifest tagged sha256-<hex>.sig in the route's
// repository (the tag scheme, which every registry has) and the referrers
// of the digest whose artifact type is cosign's signature (OCI 1.1
// referrers API, where the upstream has one); Sigstore bundles (cosign
// sign --new-bundle-format) and Notary Project signatures, which are
// referrers of their own artifact types. Both are read through the
// cache: the manifests and payloads are stored, and the .sig tag is
// served stale while the upstream is down, so a digest verified before
// verifies again offline (a referrers listing is kept in memory only). No
// signature is an empty list; an error means neither place could be read
// (on_unavailable decides).
func (s *Service) signatures(ctx context.Context, rt route, dg digest.Digest) ([]policy.Signature, error) {
	byTag, tagErr := s.tagSignatures(ctx, rt, dg)
	byRef, refErr := s.referrerSignatures(ctx, rt, dg)
	if tagErr != nil && (refErr != nil || len(byRef) == 0) {
		return nil, tagErr
	}
	return append(byTag, byRef...), nil
}

// tagSignatures reads the signatures of the tag scheme.
func (s *Service) tagSignatures(ctx context.Context, rt route, dg digest.Digest) ([]policy.Signature, error) {
	var out Outcome
	m, err := s.manifestByTag(ctx, rt, policy.SignatureTag(dg), func() []string { return accepts(nil) }, &out)
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.signaturesOf(ctx, rt, m, maxSignatures)
}

// referrerSignatures reads the signatures stored as referrers of dg: from
// the referrers API, or, where the upstream has none (Distribution 2.8
// answers 404), from the index tagged sha256-<hex> (the referrers tag
// schema, which clients keep up to date there).
func (s *Service) referrerSignatures(ctx context.Context, rt route, dg digest.Digest) ([]policy.Signature, error) {
	l, _, err := s.referrers(ctx, rt, dg, "")
	var body []byte
	switch {
	case err != nil:
		// No referrers API (404), or no answer and no kept listing (the
		// upstream down): the referrers tag schema's index, which the
		// cache keeps like any tag and serves stale while the upstream is
		// down, so an upstream without the API verifies offline too.
		var out Outcome
		m, terr := s.manifestByTag(ctx, rt, policy.ReferrersTag(dg), func() []string { return accepts(nil) }, &out)
		switch {
		case terr == nil:
			body = m.Body
		case !notFound(err):
			return nil, err
		case notFound(terr):
			return nil, nil
		default:
			return nil, terr
		}
	default:
		body = l.Body
	}
	idx, err := oci.DecodeContent(body)
	if err != nil {
		return nil, nil // not an index: no referrers
	}
	var sigs []policy.Signature
	read := 0
	for _, d := range idx.Manifests {
		readSigs := s.signaturesOf
		switch {
		case d.ArtifactType == policy.NotationArtifact:
			readSigs = s.envelopesOf
		case d.ArtifactType == policy.CosignSignatureArtifact:
		case d.ArtifactType == policy.SigstoreBundleArtifact || maybeBundle(d):
			readSigs = s.bundlesOf
		default:
			continue
		}
		if d.Digest.Validate() != nil || len(sigs) >= maxSignatures || read >= maxReferrers {
			continue
		}
		read++
		var out Outcome
		m, err := s.manifestByDigest(ctx, rt, d.Digest, func() []string { return accepts(nil) }, &out)
		if err != nil {
			return sigs, fmt.Errorf("signature referrer %s: %w", d.Digest, err)
		}
		more, err := readSigs(ctx, rt, m, maxSignatures-len(sigs))
		if err != nil {
			return sigs, err
		}
		sigs = append(sigs, more...)
	}
	return sigs, nil
}

// envelopesOf reads the Notary Project signature envelopes (JWS or COSE)
// of a signature manifest, each a small blob read through its fill so it
// is cached; at most limit of them.
func (s *Service) envelopesOf(ctx context.Context, rt route, m *Manifest, limit int) ([]policy.Signature, error) {
	mc, err := oci.DecodeContent(m.Body)
	if err != nil {
		return nil, fmt.Errorf("signature manifest %s: %w", m.Digest, err)
	}
	var sigs []policy.Signature
	for _, l := range append(mc.Layers, mc.Blobs...) {
		if !policy.IsNotationEnvelope(l.MediaType) || l.Size > maxPayload || len(sigs) >= limit {
			continue
		}
		env, err := s.readSmallBlob(ctx, rt, l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("signature envelope %s: %w", l.Digest, err)
		}
		sigs = append(sigs, policy.Signature{Envelope: env, EnvelopeType: l.MediaType})
	}
	return sigs, nil
}

// maybeBundle reports a referrer that may be a Sigstore bundle though it
// is not listed with the bundle's artifact type: cosign writes the bundle's
// referrer with an empty config, and go-containerregistry (which cosign
// uses) lists a referrer by its config's media type, in its registry's
// referrers API and in the referrers tag schema's index it keeps on
// registries without one (cosign's bundle annotation survives only in
// the former). Such a referrer is read, and counts only if a layer is a
// bundle.
func maybeBundle(d v1.Descriptor) bool {
	_, annotated := d.Annotations["dev.sigstore.bundle.content"]
	return annotated || d.ArtifactType == v1.MediaTypeEmptyJSON || d.ArtifactType == v1.MediaTypeImageConfig
}

// bundlesOf reads the Sigstore bundles (their JSON) of a bundle referrer,
// each a small blob read through its fill so it is cached; at most limit
// of them.
func (s *Service) bundlesOf(ctx context.Context, rt route, m *Manifest, limit int) ([]policy.Signature, error) {
	mc, err := oci.DecodeContent(m.Body)
	if err != nil {
		return nil, fmt.Errorf("bundle manifest %s: %w", m.Digest, err)
	}
	var sigs []policy.Signature
	for _, l := range mc.Layers {
		if !policy.IsSigstoreBundle(l.MediaType) || l.Size > maxPayload || len(sigs) >= limit {
			continue
		}
		b, err := s.readSmallBlob(ctx, rt, l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("sigstore bundle %s: %w", l.Digest, err)
		}
		sigs = append(sigs, policy.Signature{Bundle: b})
	}
	return sigs, nil
}

// notFound reports an upstream's (or the cache's) "there is none".
func notFound(err error) bool {
	var we *oci.Error
	return err != nil && (upstream.IsNotFound(err) || errors.As(err, &we) && (we.Code == oci.ErrManifestUnknown || we.Code == oci.ErrNameUnknown))
}

// signaturesOf reads the simple-signing layers of a signature manifest:
// each payload (a small blob, read through its fill so it is cached) with
// its signature annotation, and the others (a keyless signature's
// certificate and timestamps); at most limit of them.
func (s *Service) signaturesOf(ctx context.Context, rt route, m *Manifest, limit int) ([]policy.Signature, error) {
	mc, err := oci.DecodeContent(m.Body)
	if err != nil {
		return nil, fmt.Errorf("signature manifest %s: %w", m.Digest, err)
	}
	var sigs []policy.Signature
	for _, l := range mc.Layers {
		b64 := l.Annotations[policy.SignatureAnnotation]
		if l.MediaType != policy.SimpleSigningMediaType || b64 == "" || l.Size > maxPayload || len(sigs) >= limit {
			continue
		}
		payload, err := s.readSmallBlob(ctx, rt, l.Digest, l.Size)
		if err != nil {
			return nil, fmt.Errorf("signature payload %s: %w", l.Digest, err)
		}
		sigs = append(sigs, policy.Signature{Payload: payload, Base64: b64, Annotations: l.Annotations})
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
	case metadataArtifact(ref, m):
		ans.Decision, ans.Served, ans.Reason = policy.ActionAllow, true, "signatures, attestations and SBOMs (cosign's tag scheme, referrers) are served without a decision"
	case ref.IsDigest() && s.covered(rt, m.Digest):
		ans.Decision, ans.Served, ans.Reason = policy.ActionAllow, true, "an allowed index under this repository lists it"
	default:
		d, _ := s.decision(ctx, set, rt, ref.Tag, m.Digest)
		ans.Decision, ans.Served, ans.Rule, ans.Reason, ans.Signer = d.Verdict, d.Allow, d.Rule, d.Reason, d.Signer
	}
	ans.Mode = set.Mode()
	return ans, nil
}

// PolicyCheckImage is PolicyCheck of an image as docker pull names it
// (a name without a registry is the default upstream's).
func (s *Service) PolicyCheckImage(ctx context.Context, image string) (PolicyAnswer, error) {
	img, err := oci.ParseImage(image)
	if err != nil {
		return PolicyAnswer{}, err
	}
	up := s.upstreams[0].Name // a name without a registry: the default upstream
	if img.Registry != "" {
		up = ""
		for _, u := range s.upstreams {
			if u.Name == img.Registry || slices.Contains(u.Aliases, img.Registry) {
				up = u.Name
			}
		}
		if up == "" {
			return PolicyAnswer{}, fmt.Errorf("registry %s is not an upstream of this mirror", img.Registry)
		}
	}
	ref := oci.Reference{Tag: img.Tag, Digest: img.Digest}
	if img.Digest != "" {
		ref.Tag = ""
	}
	return s.PolicyCheck(ctx, up, oci.HubRepository(up, img.Repo), ref)
}
