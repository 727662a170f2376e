package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/regcache/regcache/internal/policy"
)

// filePolicy is the YAML policy block (and a policy_file's whole
// document); values are text, parsed here so an error names the key.
type filePolicy struct {
	Mode          *string           `yaml:"mode"`
	Default       *string           `yaml:"default"`
	Verify        *fileVerify       `yaml:"verify"`
	OnUnavailable *string           `yaml:"on_unavailable"`
	Rules         *[]filePolicyRule `yaml:"rules"`
}

type filePolicyRule struct {
	Match         *string     `yaml:"match"`
	Allow         *string     `yaml:"allow"`
	Deny          *string     `yaml:"deny"`
	Cooldown      *string     `yaml:"cooldown"`
	Verify        *fileVerify `yaml:"verify"`
	OnUnavailable *string     `yaml:"on_unavailable"`
	line          int
}

// UnmarshalYAML keeps the rule's line, for messages.
func (r *filePolicyRule) UnmarshalYAML(n *yaml.Node) error {
	type plain filePolicyRule
	if err := n.Decode((*plain)(r)); err != nil {
		return err
	}
	r.line = n.Line
	return nil
}

type fileVerify struct {
	AnyOf []fileVerifier `yaml:"any_of"`
}

type fileVerifier struct {
	Cosign *struct {
		Key         string `yaml:"key"`
		Identity    string `yaml:"identity"`
		Issuer      string `yaml:"issuer"`
		TrustedRoot string `yaml:"trusted_root"`
	} `yaml:"cosign"`
	Notation *struct {
		TrustStore string   `yaml:"trust_store"`
		Identities []string `yaml:"identities"`
	} `yaml:"notation"`
}

// policy converts the YAML block; key is its path for errors ("policy").
func (fp filePolicy) policy(key string) (policy.Policy, error) {
	var p policy.Policy
	var errs []error
	text := func(v *string) string {
		if v == nil {
			return ""
		}
		return strings.TrimSpace(*v)
	}
	p.Mode, p.Default, p.OnUnavailable = text(fp.Mode), text(fp.Default), text(fp.OnUnavailable)
	if fp.Verify != nil {
		p.Verify = verifiers(fp.Verify)
	}
	if fp.Rules == nil {
		return p, nil
	}
	for i, fr := range *fp.Rules {
		where := fmt.Sprintf("%s.rules[%d] (line %d)", key, i, fr.line)
		r := policy.Rule{Match: text(fr.Match), Line: fr.line, OnUnavailable: text(fr.OnUnavailable)}
		flag := func(field string, v *string) bool {
			if v == nil {
				return false
			}
			b, err := strconv.ParseBool(text(v))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: want true or false, got %q", where, field, *v))
			}
			return b
		}
		r.Allow, r.Deny = flag("allow", fr.Allow), flag("deny", fr.Deny)
		if fr.Cooldown != nil {
			d, err := time.ParseDuration(text(fr.Cooldown))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.cooldown: %w", where, invalidDuration(*fr.Cooldown)))
			}
			r.Cooldown = d
		}
		if fr.Verify != nil {
			r.Verify = verifiers(fr.Verify)
		}
		p.Rules = append(p.Rules, r)
	}
	return p, errors.Join(errs...)
}

func verifiers(fv *fileVerify) []policy.Verifier {
	out := []policy.Verifier{}
	for _, v := range fv.AnyOf {
		var pv policy.Verifier
		if v.Cosign != nil {
			c := policy.Cosign(*v.Cosign)
			pv.Cosign = &c
		}
		if v.Notation != nil {
			n := policy.Notation(*v.Notation)
			pv.Notation = &n
		}
		out = append(out, pv)
	}
	return out
}

// LoadPolicyFile reads a policy file: the policy block's keys at its top
// level, or a whole configuration file with a policy: block (so
// `regcache policy lint` takes either). Errors name the key and line.
func LoadPolicyFile(path string) (policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return policy.Policy{}, fmt.Errorf("policy_file: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return policy.Policy{}, fmt.Errorf("policy_file: %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return policy.Policy{}, fmt.Errorf("policy_file: %s is empty", path)
	}
	n := doc.Content[0]
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "policy" {
				n = n.Content[i+1]
				break
			}
		}
	}
	if errs := checkNode(n, reflect.TypeFor[filePolicy](), "policy"); len(errs) > 0 {
		for i, err := range errs {
			errs[i] = fmt.Errorf("policy_file %s: %w", path, err)
		}
		return policy.Policy{}, errors.Join(errs...)
	}
	var fp filePolicy
	if err := n.Decode(&fp); err != nil {
		return policy.Policy{}, fmt.Errorf("policy_file: %s: %w", path, err)
	}
	p, err := fp.policy("policy")
	if err != nil {
		return p, fmt.Errorf("policy_file %s: %w", path, err)
	}
	return p, nil
}

// loadPolicy reads policy_file, when set, into c.Policy: the file or the
// block, never both.
func (c *Config) loadPolicy() error {
	if c.PolicyFile == "" {
		return nil
	}
	if c.Policy.Enabled() {
		return errors.New("config: policy_file: set policy_file or a policy block, not both")
	}
	p, err := LoadPolicyFile(c.PolicyFile)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	c.Policy = p
	return nil
}
