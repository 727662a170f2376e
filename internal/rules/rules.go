// Package rules decides, per upstream, repository and tag, how the cache
// treats an image: how long a tag is served without asking upstream
// (freshness), how long unused content is kept (max_age), whether a tag
// never moves (immutable) and whether an image is kept whatever the size
// or age limits say (pin). Rules are tried in order; the first whose
// pattern matches applies, and a field it leaves unset falls back to the
// global setting, not to a later rule.
//
// A pattern is <upstream>/<repository>:<tag>. The upstream and repository
// parts are path.Match globs ("*" never crosses a "/"; a "**" segment of
// the repository matches any number of segments); "{a,b}" gives
// alternatives. The tag part is a glob too, or a regular expression
// written between slashes ("/^v[0-9]+$/", unanchored unless anchored).
// Without ":<tag>" any tag matches.
package rules

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Rule is one entry of the configuration's rules list.
type Rule struct {
	// Match is the pattern, <upstream>/<repository>[:<tag>].
	Match string
	// Freshness, when set, replaces the global freshness for matching
	// tags.
	Freshness *time.Duration
	// MaxAge, when set, replaces storage.max_age for matching images
	// (0: never dropped for age).
	MaxAge *time.Duration
	// Immutable tags are never revalidated once cached.
	Immutable bool
	// Pin keeps matching images whatever the size or age limits say;
	// their bytes still count against the cap.
	Pin bool
}

// Set is a compiled, ordered list of rules. The zero value and nil match
// nothing.
type Set struct {
	rules []compiled
}

type compiled struct {
	Rule
	*Pattern
}

// Pattern is a compiled <upstream>/<repository>[:<tag>] pattern, as rules
// match them; other per-repository settings (the pull policy) reuse it.
type Pattern struct {
	ups, repos []string       // glob alternatives
	tags       []string       // glob alternatives, when re is nil
	re         *regexp.Regexp // the tag's regular expression
}

// Applied is the rule that matched a reference.
type Applied struct {
	// Index is the rule's place in the list, from 0.
	Index int
	Rule
}

// String names the rule as the X-Regcache-Rule header and `cache ls`
// show it: its index and its pattern.
func (a Applied) String() string { return fmt.Sprintf("rules[%d] %s", a.Index, a.Match) }

// Compile checks and compiles rules. Errors name the rule's index and the
// field: "rules[2].match: ...".
func Compile(rs []Rule) (*Set, error) {
	s := &Set{}
	for i, r := range rs {
		c, err := compile(r)
		if err != nil {
			return nil, fmt.Errorf("rules[%d].%w", i, err)
		}
		s.rules = append(s.rules, c)
	}
	return s, nil
}

func compile(r Rule) (compiled, error) {
	c := compiled{Rule: r}
	if r.Freshness != nil && *r.Freshness < 0 {
		return c, fmt.Errorf("freshness: %s is negative", *r.Freshness)
	}
	if r.MaxAge != nil && *r.MaxAge < 0 {
		return c, fmt.Errorf("max_age: %s is negative", *r.MaxAge)
	}
	if r.Immutable && r.Freshness != nil {
		return c, fmt.Errorf("freshness: an immutable tag is never revalidated; set one or the other")
	}
	if r.Freshness == nil && r.MaxAge == nil && !r.Immutable && !r.Pin {
		return c, fmt.Errorf("match: %q sets nothing (freshness, max_age, immutable or pin)", r.Match)
	}
	p, err := CompilePattern(r.Match)
	if err != nil {
		return c, fmt.Errorf("match: %w", err)
	}
	c.Pattern = p
	return c, nil
}

// CompilePattern checks and compiles a pattern,
// <upstream>/<repository>[:<tag>] (see the package comment).
func CompilePattern(match string) (*Pattern, error) {
	c := &Pattern{}
	bad := func(why string) (*Pattern, error) {
		return nil, fmt.Errorf("%q: %s (want <upstream>/<repository>[:<tag>])", match, why)
	}
	if strings.ContainsFunc(match, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
		return bad("spaces and control characters are not part of a name")
	}
	up, rest, ok := strings.Cut(match, "/")
	if !ok || up == "" || rest == "" {
		return bad("no repository")
	}
	repo, tag, hasTag := strings.Cut(rest, ":")
	if !hasTag {
		tag = "*"
	}
	var err error
	if c.ups, err = globs(up); err != nil {
		return bad("upstream: " + err.Error())
	}
	if c.repos, err = globs(repo); err != nil {
		return bad("repository: " + err.Error())
	}
	if len(tag) >= 2 && strings.HasPrefix(tag, "/") && strings.HasSuffix(tag, "/") {
		if c.re, err = regexp.Compile(tag[1 : len(tag)-1]); err != nil {
			return bad("tag: " + err.Error())
		}
		return c, nil
	}
	if tag == "" {
		return bad("empty tag")
	}
	if c.tags, err = globs(tag); err != nil {
		return bad("tag: " + err.Error())
	}
	return c, nil
}

// Match reports whether the reference matches: tag is "" for a request
// by digest (matched by a tag glob of "*" only).
func (c *Pattern) Match(upstream, repo, tag string) bool {
	return anyMatch(c.ups, upstream) && c.repoMatch(repo) && c.tagMatch(tag)
}

// MatchRepository reports whether the pattern's upstream and repository
// parts match, whatever its tag part says.
func (c *Pattern) MatchRepository(upstream, repo string) bool {
	return anyMatch(c.ups, upstream) && c.repoMatch(repo)
}

// AllTags reports whether the pattern's tag part matches every tag (none
// was given, or "*").
func (c *Pattern) AllTags() bool { return c.re == nil && slices.Contains(c.tags, "*") }

// globs expands {a,b} alternatives and checks each glob's syntax.
func globs(p string) ([]string, error) {
	out, err := expand(p)
	if err != nil {
		return nil, err
	}
	for _, g := range out {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("%q: %w", g, err)
		}
	}
	return out, nil
}

// expand turns "a{b,c}d{e,f}" into abde, abdf, acde, acdf.
func expand(p string) ([]string, error) {
	open := strings.IndexByte(p, '{')
	if open < 0 {
		if strings.IndexByte(p, '}') >= 0 {
			return nil, fmt.Errorf("%q: } without {", p)
		}
		return []string{p}, nil
	}
	end := strings.IndexByte(p[open:], '}')
	if end < 0 {
		return nil, fmt.Errorf("%q: { without }", p)
	}
	end += open
	alts := strings.Split(p[open+1:end], ",")
	if strings.IndexByte(p[open+1:end], '{') >= 0 {
		return nil, fmt.Errorf("%q: nested {", p)
	}
	tails, err := expand(p[end+1:])
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range alts {
		for _, t := range tails {
			out = append(out, p[:open]+a+t)
		}
	}
	return out, nil
}

// Match returns the first rule matching the reference: tag is "" for a
// request by digest (matched by a tag glob of "*" only).
func (s *Set) Match(upstream, repo, tag string) (Applied, bool) {
	if s == nil {
		return Applied{}, false
	}
	for i, c := range s.rules {
		if c.Pattern.Match(upstream, repo, tag) {
			return Applied{Index: i, Rule: c.Rule}, true
		}
	}
	return Applied{}, false
}

// Len is the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// Pins says whether any rule pins, so callers can skip the walk.
func (s *Set) Pins() bool {
	for _, c := range s.rulesOrNil() {
		if c.Pin {
			return true
		}
	}
	return false
}

// Ages says whether any rule sets max_age.
func (s *Set) Ages() bool {
	for _, c := range s.rulesOrNil() {
		if c.MaxAge != nil {
			return true
		}
	}
	return false
}

func (s *Set) rulesOrNil() []compiled {
	if s == nil {
		return nil
	}
	return s.rules
}

func (c *Pattern) tagMatch(tag string) bool {
	if c.re != nil {
		return tag != "" && c.re.MatchString(tag)
	}
	return anyMatch(c.tags, tag)
}

func (c *Pattern) repoMatch(repo string) bool {
	for _, g := range c.repos {
		if !strings.Contains(g, "**") { // path.Match's * stays within a segment already
			if ok, _ := path.Match(g, repo); ok {
				return true
			}
			continue
		}
		if segments(strings.Split(g, "/"), strings.Split(repo, "/")) {
			return true
		}
	}
	return false
}

// segments matches a repository's path segments against a glob's: "**"
// takes any number of them (none too), any other segment one.
func segments(glob, name []string) bool {
	if len(glob) == 0 {
		return len(name) == 0
	}
	if glob[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if segments(glob[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, _ := path.Match(glob[0], name[0])
	return ok && segments(glob[1:], name[1:])
}

func anyMatch(globs []string, s string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}
