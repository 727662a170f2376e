package config

import (
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/policy"
)

const policyBlock = `policy:
  mode: audit
  default: allow
  rules:
    - match: docker.io/library/*
      allow: true
    - match: docker.io/*
      cooldown: 72h
    - match: "*/*/evil-*"
      deny: true
`

func TestPolicyBlock(t *testing.T) {
	t.Parallel()
	c, err := loadWith(t, policyBlock, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := policy.Policy{Mode: "audit", Default: "allow", Rules: []policy.Rule{
		{Match: "docker.io/library/*", Line: 5, Allow: true},
		{Match: "docker.io/*", Line: 7, Cooldown: 72 * time.Hour},
		{Match: "*/*/evil-*", Line: 9, Deny: true},
	}}
	if got := c.Policy; got.Mode != want.Mode || got.Default != want.Default || len(got.Rules) != 3 ||
		got.Rules[0].Match != want.Rules[0].Match || got.Rules[1].Cooldown != want.Rules[1].Cooldown || !got.Rules[2].Deny || got.Rules[1].Line != 7 {
		t.Errorf("policy = %+v, want %+v", got, want)
	}
}

func TestPolicyFile(t *testing.T) {
	t.Parallel()
	// The block's keys at the top level, as policy_file holds them.
	path := writeFile(t, "policy.yaml", strings.ReplaceAll(strings.TrimPrefix(policyBlock, "policy:\n"), "\n  ", "\n")[2:])
	c, err := loadWith(t, "", nil, "--policy-file", path)
	if err != nil {
		t.Fatal(err)
	}
	if c.PolicyFile != path || c.Policy.Mode != "audit" || len(c.Policy.Rules) != 3 || c.Policy.Rules[2].Match != "*/*/evil-*" {
		t.Errorf("policy from --policy-file: %+v", c.Policy)
	}
	// A configuration file with a policy block is a policy file too.
	if p, err := LoadPolicyFile(writeFile(t, "regcache.yaml", "addr: :5000\n"+policyBlock)); err != nil || len(p.Rules) != 3 {
		t.Errorf("LoadPolicyFile of a configuration file: %+v, %v", p, err)
	}
	// Not both.
	if _, err := loadWith(t, policyBlock, nil, "--policy-file", path); err == nil || !strings.Contains(err.Error(), "set policy_file or a policy block, not both") {
		t.Errorf("policy and policy_file: %v", err)
	}
}

func TestPolicyErrorsNameKeyAndLine(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, file, want string }{
		{"unknown key", "rules:\n  - match: a/b\n    alow: true\n", "policy.rules[0].alow: unknown key (line 3); did you mean allow?"},
		{"bad duration", "rules:\n  - match: a/b\n    cooldown: 3 days\n", `policy.rules[0] (line 2).cooldown: invalid duration "3 days"`},
		{"bad flag", "rules:\n  - match: a/b\n    deny: maybe\n", `policy.rules[0] (line 2).deny: want true or false, got "maybe"`},
		{"shape", "rules:\n  match: a/b\n", "policy.rules: want a list, got a mapping (line 2)"},
		{"nothing decided", "mode: enforce\nrules:\n  - match: a/b\n", `policy.rules[0] (line 3).match: "a/b" decides nothing`},
		{"missing key", "rules:\n  - match: a/b\n    verify:\n      any_of:\n        - cosign: { key: /nonexistent.pub }\n", "policy.rules[0] (line 2).verify.any_of[0].cosign.key: open /nonexistent.pub"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := LoadPolicyFile(writeFile(t, "policy.yaml", tt.file))
			if err == nil {
				_, err = policy.Compile(p)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}
