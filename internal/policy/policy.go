// Package policy decides whether the mirror may serve a digest: the
// pull-time supply-chain policy (yaml policy, or the file policy_file
// names). Rules are tried in order over <upstream>/<repository>[:<tag>]
// patterns (the rules package's matcher); the first that matches decides,
// else the default does. A rule allows, denies, holds back digests first
// seen less than a cooldown ago, or asks for a signature that verifies
// with one of its verifiers (cosign keyed or keyless, Notary Project). In
// audit mode every decision is made and reported, and nothing is refused.
//
// The package holds the model and the decision; it fetches nothing. The
// content service hands it the digest, when it first saw it and a way to
// read the digest's signatures (which it fetches and caches like any
// other content, so a decision can be made again offline).
package policy

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/regcache/regcache/internal/rules"
)

// Modes and actions, as the YAML spells them.
const (
	Enforce = "enforce" // refuse what the policy denies
	Audit   = "audit"   // decide and report, never refuse

	ActionAllow  = "allow"
	ActionDeny   = "deny"
	ActionVerify = "verify"
)

// Policy is the YAML policy block. The zero value is no policy.
type Policy struct {
	// Mode is enforce (default) or audit.
	Mode string
	// Default decides a digest no rule matches: allow (default), deny or
	// verify (with Verify and OnUnavailable).
	Default string
	// Verify and OnUnavailable go with Default verify.
	Verify        []Verifier
	OnUnavailable string
	// Rules are tried in order; the first match decides.
	Rules []Rule
}

// Enabled reports whether a policy is configured at all.
func (p Policy) Enabled() bool {
	return p.Mode != "" || p.Default != "" || len(p.Rules) > 0 || len(p.Verify) > 0
}

// Rule is one entry of policy.rules.
type Rule struct {
	// Match is the pattern, <upstream>/<repository>[:<tag>].
	Match string
	// Line is where the rule is written in its file (0: unknown), for
	// messages.
	Line int
	// Allow and Deny decide outright.
	Allow, Deny bool
	// Cooldown refuses a digest the mirror first saw less than this long
	// ago; what passes goes on to Verify, if set, else is allowed.
	Cooldown time.Duration
	// Verify lists the verifiers; a signature verified by any one allows
	// (any_of).
	Verify []Verifier
	// OnUnavailable is what a verify rule decides when the signatures
	// cannot be read (the upstream down, nothing cached): deny (default)
	// or allow.
	OnUnavailable string
}

// Verifier is one entry of verify.any_of.
type Verifier struct {
	Cosign   *Cosign
	Notation *Notation
}

// Cosign verifies cosign signatures: keyed (Key), or keyless (Identity,
// Issuer, against TrustedRoot).
type Cosign struct {
	Key         string
	Identity    string
	Issuer      string
	TrustedRoot string
}

// Notation verifies Notary Project signatures.
type Notation struct {
	TrustStore string
	Identities []string
}

// Set is a compiled policy. A nil Set decides nothing (every digest is
// served, no blob is held back).
type Set struct {
	mode  string
	rules []compiled
	def   compiled
}

type compiled struct {
	Rule
	name    string // "policy.rules[2] docker.io/*", "policy.default"
	label   string // "rules[2]", "default": the metric's label
	action  string
	pattern *rules.Pattern // nil for the default
	keys    []verifier
}

// verifier is one entry of verify.any_of, compiled: it checks one
// signature of digest d at now and says who signed.
type verifier interface {
	verify(sig Signature, d digest.Digest, now time.Time) (signer string, err error)
}

var (
	_ verifier = key{}
	_ verifier = (*keyless)(nil)
	_ verifier = (*notation)(nil)
)

// key is one cosign public key: it verifies simple-signing signatures,
// and Sigstore bundles signed with the key.
type key struct {
	path     string
	verifier signature.Verifier
	bundles  *keyBundles
}

// Compile checks a policy and loads its keys. Errors name the key in the
// YAML (policy.rules[2].verify.any_of[0].cosign.key) and, when known,
// its line. A zero policy compiles to nil.
func Compile(p Policy) (*Set, error) {
	if !p.Enabled() {
		return nil, nil
	}
	s := &Set{mode: p.Mode}
	var errs []error
	switch p.Mode {
	case "":
		s.mode = Enforce
	case Enforce, Audit:
	default:
		errs = append(errs, fmt.Errorf("policy.mode: want enforce or audit, got %q", p.Mode))
	}
	def := Rule{Match: "*/**", OnUnavailable: p.OnUnavailable, Verify: p.Verify}
	switch p.Default {
	case "", ActionAllow:
		def.Allow = true
		if len(p.Verify) > 0 {
			errs = append(errs, errors.New("policy.verify: goes with default: verify"))
		}
	case ActionDeny:
		def.Deny = true
	case ActionVerify:
		if len(p.Verify) == 0 {
			errs = append(errs, errors.New("policy.default: verify needs policy.verify.any_of"))
		}
	default:
		errs = append(errs, fmt.Errorf("policy.default: want allow, deny or verify, got %q", p.Default))
	}
	c, err := compileRule(def, "policy")
	if err != nil {
		errs = append(errs, err)
	}
	c.name, c.label, c.pattern = "policy.default", "default", nil
	s.def = c
	for i, r := range p.Rules {
		where := fmt.Sprintf("policy.rules[%d]", i)
		if r.Line > 0 {
			where += fmt.Sprintf(" (line %d)", r.Line)
		}
		c, err := compileRule(r, where)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.name, c.label = fmt.Sprintf("policy.rules[%d] %s", i, r.Match), fmt.Sprintf("rules[%d]", i)
		s.rules = append(s.rules, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

func compileRule(r Rule, where string) (compiled, error) {
	c := compiled{Rule: r}
	var errs []error
	bad := func(field, f string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", where, field, fmt.Sprintf(f, a...)))
	}
	if r.Match == "" {
		bad("match", "missing")
	} else if p, err := rules.CompilePattern(r.Match); err != nil {
		bad("match", "%v", err)
	} else {
		c.pattern = p
	}
	if r.Cooldown < 0 {
		bad("cooldown", "%s is negative", r.Cooldown)
	}
	switch {
	case r.Deny && (r.Allow || r.Cooldown > 0 || len(r.Verify) > 0):
		bad("deny", "a denying rule sets nothing else (allow, cooldown, verify)")
	case r.Allow && len(r.Verify) > 0:
		bad("allow", "set allow or verify, not both")
	case r.Deny:
		c.action = ActionDeny
	case len(r.Verify) > 0:
		c.action = ActionVerify
	case r.Allow, r.Cooldown > 0:
		c.action = ActionAllow
	default:
		bad("match", "%q decides nothing (allow, deny, cooldown or verify)", r.Match)
	}
	switch r.OnUnavailable {
	case "", ActionDeny, ActionAllow:
	default:
		bad("on_unavailable", "want deny or allow, got %q", r.OnUnavailable)
	}
	if r.OnUnavailable != "" && len(r.Verify) == 0 {
		bad("on_unavailable", "goes with verify")
	}
	for i, v := range r.Verify {
		k, err := compileVerifier(v, fmt.Sprintf("%s.verify.any_of[%d]", where, i))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.keys = append(c.keys, k)
	}
	return c, errors.Join(errs...)
}

// compileVerifier loads a verifier: a cosign public key, a keyless cosign
// identity with its trusted root, or a Notary Project trust store with the
// identities to trust.
func compileVerifier(v Verifier, where string) (verifier, error) {
	switch {
	case v.Notation != nil && v.Cosign != nil:
		return nil, fmt.Errorf("%s: one verifier per entry (cosign or notation)", where)
	case v.Notation != nil:
		return compileNotation(v.Notation, where)
	case v.Cosign == nil:
		return nil, fmt.Errorf("%s: want cosign or notation", where)
	case v.Cosign.Key != "" && (v.Cosign.Identity != "" || v.Cosign.Issuer != "" || v.Cosign.TrustedRoot != ""):
		return nil, fmt.Errorf("%s.cosign: set key (keyed), or identity, issuer and trusted_root (keyless), not both", where)
	case v.Cosign.Key == "" && v.Cosign.Identity == "" && v.Cosign.Issuer == "" && v.Cosign.TrustedRoot == "":
		return nil, fmt.Errorf("%s.cosign: want key (keyed), or identity, issuer and trusted_root (keyless)", where)
	case v.Cosign.Key == "":
		return compileKeyless(v.Cosign, where)
	}
	pemBytes, err := os.ReadFile(v.Cosign.Key)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.key: %w", where, err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.key: %s is not a PEM public key: %w", where, v.Cosign.Key, err)
	}
	ver, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.key: %s: %w", where, v.Cosign.Key, err)
	}
	bundles, err := newKeyBundles(ver)
	if err != nil {
		return nil, fmt.Errorf("%s.cosign.key: %s: %w", where, v.Cosign.Key, err)
	}
	return key{path: v.Cosign.Key, verifier: ver, bundles: bundles}, nil
}

// Mode is enforce or audit.
func (s *Set) Mode() string {
	if s == nil {
		return ""
	}
	return s.mode
}

// Labels lists every rule's metric label, the default last: the bounded
// set a metric by rule takes.
func (s *Set) Labels() []string {
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.rules)+1)
	for _, c := range s.rules {
		out = append(out, c.label)
	}
	return append(out, s.def.label)
}

// Gates reports whether blobs under the repository are served only when
// a manifest the policy allowed there references them: unless the rules
// that can decide the repository's digests, by any tag, all allow
// outright (or none does, and the default allows outright).
func (s *Set) Gates(upstream, repo string) bool {
	if s == nil {
		return false
	}
	for _, c := range s.rules {
		if !c.pattern.MatchRepository(upstream, repo) {
			continue
		}
		if c.action != ActionAllow || c.Cooldown != 0 {
			return true
		}
		if c.pattern.AllTags() { // a plain allow of every tag decides the rest
			return false
		}
	}
	return s.def.action != ActionAllow || s.def.Cooldown != 0
}

func (s *Set) match(upstream, repo, tag string) compiled {
	for _, c := range s.rules {
		if c.pattern.Match(upstream, repo, tag) {
			return c
		}
	}
	return s.def
}

// Subject is what is decided: a digest under a repository, asked by tag
// (or by digest, Tag "").
type Subject struct {
	Upstream, Repo, Tag string
	Digest              digest.Digest
	// FirstSeen is when the mirror first saw the digest (for cooldown).
	FirstSeen time.Time
}

// Signature is one signature of a digest, one of three kinds: a
// simple-signing signature (Payload and Base64: the payload signed and the
// signature, base64, as cosign writes it in the layer's
// dev.cosignproject.cosign/signature annotation; Annotations: the layer's
// others, which carry a keyless signature's certificate and timestamps), a
// Notary Project signature envelope (Envelope, of media type
// EnvelopeType), or a Sigstore bundle's JSON (Bundle).
type Signature struct {
	Payload      []byte
	Base64       string
	Annotations  map[string]string
	Envelope     []byte
	EnvelopeType string
	Bundle       []byte
}

// Signatures reads the digest's signatures. An error means they could not
// be read at all (the upstream down, nothing cached): on_unavailable
// decides. No signatures is an empty list, not an error.
type Signatures func(ctx context.Context) ([]Signature, error)

// Decision is the policy's answer for a subject.
type Decision struct {
	// Allow says whether the digest is served: in audit mode always.
	Allow bool
	// Verdict is what the policy decided: allow or deny (in audit mode a
	// deny is served, and reported as "would deny").
	Verdict string
	// Rule names the rule that decided ("policy.rules[2] docker.io/*").
	Rule string
	// Label is the rule's bounded metric label ("rules[2]", "default").
	Label string
	// Reason says why, in a sentence.
	Reason string
	// Signer is the key whose signature verified ("" when none did).
	Signer string
	// Unavailable is set when the signatures could not be read.
	Unavailable bool
}

// Audited reports an audit-mode deny: served, reported as "would deny".
func (d Decision) Audited() bool { return d.Allow && d.Verdict == ActionDeny }

// Decide decides a subject at now. sigs is read only for a verify rule.
func (s *Set) Decide(ctx context.Context, subj Subject, now time.Time, sigs Signatures) Decision {
	c := s.match(subj.Upstream, subj.Repo, subj.Tag)
	d := c.decide(ctx, subj, now, sigs)
	d.Rule, d.Label = c.name, c.label
	d.Allow = d.Verdict == ActionAllow || s.mode == Audit
	return d
}

func (c compiled) decide(ctx context.Context, subj Subject, now time.Time, sigs Signatures) Decision {
	if c.action == ActionDeny {
		return Decision{Verdict: ActionDeny, Reason: "denied by the policy"}
	}
	if c.Cooldown > 0 {
		first := subj.FirstSeen
		if first.IsZero() {
			first = now
		}
		if until := first.Add(c.Cooldown); now.Before(until) {
			return Decision{Verdict: ActionDeny,
				Reason: fmt.Sprintf("first seen %s ago, in a cooldown of %s (served from %s)", now.Sub(first).Round(time.Second), c.Cooldown, until.UTC().Format(time.RFC3339))}
		}
	}
	if c.action != ActionVerify {
		return Decision{Verdict: ActionAllow, Reason: "allowed by the policy"}
	}
	list, err := sigs(ctx)
	if err != nil {
		d := Decision{Verdict: ActionDeny, Unavailable: true, Reason: "signatures unavailable: " + err.Error()}
		if c.OnUnavailable == ActionAllow {
			d.Verdict, d.Reason = ActionAllow, d.Reason+" (on_unavailable: allow)"
		}
		return d
	}
	if len(list) == 0 {
		return Decision{Verdict: ActionDeny, Reason: "no signature found"}
	}
	var why []string
	for _, k := range c.keys {
		for _, sig := range list {
			signer, err := k.verify(sig, subj.Digest, now)
			if err == nil {
				return Decision{Verdict: ActionAllow, Signer: signer, Reason: "signature verified: " + signer}
			}
			why = append(why, err.Error())
		}
	}
	return Decision{Verdict: ActionDeny, Reason: fmt.Sprintf("no signature verified with the rule's keys (%d found: %s)", len(list), strings.Join(dedupe(why), "; "))}
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] && len(out) < 3 {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
