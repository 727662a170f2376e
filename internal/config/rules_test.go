package config

import (
	"strings"
	"testing"
	"time"
)

// TestRulesFromFile: the rules list is read in order with every field,
// and a bad rule is refused with its index and field named.
func TestRulesFromFile(t *testing.T) {
	t.Parallel()
	c, err := loadWith(t, `
rules:
  - match: docker.io/library/*:*
    freshness: 10m
  - match: "*/**:/^v?[0-9]+\\.[0-9]+\\.[0-9]+$/"
    immutable: true
  - match: docker.io/library/{alpine,ubuntu,golang}:*
    pin: true
  - match: ghcr.io/myorg/*
    max_age: 24h
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Rules) != 4 || *c.Rules[0].Freshness != 10*time.Minute || !c.Rules[1].Immutable ||
		c.Rules[1].Match != `*/**:/^v?[0-9]+\.[0-9]+\.[0-9]+$/` || !c.Rules[2].Pin || *c.Rules[3].MaxAge != 24*time.Hour {
		t.Fatalf("rules = %+v", c.Rules)
	}
	tests := []struct{ yaml, want string }{
		{"rules:\n  - match: docker.io/a\n    freshness: soon\n", "rules[0].freshness"},
		{"rules:\n  - match: docker.io/a\n    pin: true\n  - match: docker.io/b\n    pin: maybe\n", "rules[1].pin"},
		{"rules:\n  - match: docker.io/a\n    pin: true\n  - match: nothing\n    pin: true\n", "rules[1].match"},
		{"rules:\n  - pin: true\n", "rules[0].match: missing"},
		{"rules:\n  - match: docker.io/a\n    pinned: true\n", "rules[0].pinned: unknown key"},
		{"rules:\n  - match: docker.io/a\n    max_age: -1h\n", "rules[0].max_age"},
	}
	for _, tt := range tests {
		_, err := loadWith(t, tt.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want one naming %s", tt.yaml, err, tt.want)
		}
	}
}
