package rules

import (
	"strings"
	"testing"
	"time"
)

func dur(d time.Duration) *time.Duration { return &d }

func TestMatchFirstWins(t *testing.T) {
	t.Parallel()
	s, err := Compile([]Rule{
		{Match: "docker.io/library/{alpine,ubuntu,golang}:*", Pin: true},
		{Match: "*/**:/^v?[0-9]+\\.[0-9]+\\.[0-9]+$/", Immutable: true},
		{Match: "docker.io/library/*:*", Freshness: dur(10 * time.Minute)},
		{Match: "ghcr.io/myorg/**", MaxAge: dur(24 * time.Hour)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, up, repo, tag string
		want                int // -1: none
	}{
		{"alternative", "docker.io", "library/ubuntu", "22.04", 0},
		{"alternative by digest", "docker.io", "library/alpine", "", 0},
		{"not an alternative", "docker.io", "library/debian", "12", 2},
		{"tag regexp", "quay.io", "org/team/app", "v1.2.3", 1},
		{"tag regexp anchored", "quay.io", "org/app", "v1.2.3-rc1", -1},
		{"regexp needs a tag", "quay.io", "org/app", "", -1},
		{"first wins over regexp", "docker.io", "library/golang", "1.22.1", 0},
		{"glob does not cross slash", "docker.io", "library/x/y", "1", -1},
		{"double star", "ghcr.io", "myorg/a/b/c", "latest", 3},
		{"double star none", "ghcr.io", "myorg", "latest", 3},
		{"other upstream", "ghcr.io", "other/app", "latest", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, ok := s.Match(tt.up, tt.repo, tt.tag)
			if tt.want < 0 {
				if ok {
					t.Fatalf("matched %s, want none", a)
				}
				return
			}
			if !ok || a.Index != tt.want {
				t.Fatalf("got %v %v, want rules[%d]", a, ok, tt.want)
			}
		})
	}
}

func TestCompileErrorsNameIndexAndField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rules []Rule
		want  string
	}{
		{[]Rule{{Match: "docker.io/a", Pin: true}, {Match: "docker.io", Pin: true}}, "rules[1].match"},
		{[]Rule{{Match: "docker.io/[a", Pin: true}}, "rules[0].match"},
		{[]Rule{{Match: "docker.io/a:/(/", Pin: true}}, "rules[0].match"},
		{[]Rule{{Match: "docker.io/{a,b", Pin: true}}, "rules[0].match"},
		{[]Rule{{Match: "docker.io/a", Freshness: dur(-time.Second)}}, "rules[0].freshness"},
		{[]Rule{{Match: "docker.io/a", MaxAge: dur(-time.Second)}}, "rules[0].max_age"},
		{[]Rule{{Match: "docker.io/a", Immutable: true, Freshness: dur(time.Second)}}, "rules[0].freshness"},
		{[]Rule{{Match: "docker.io/a"}}, "sets nothing"},
		{[]Rule{{Match: "docker.io/a b:c", Pin: true}}, "rules[0].match"},
		{[]Rule{{Match: "docker.io/a\nX-Evil: 1", Pin: true}}, "rules[0].match"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.rules)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Compile(%+v) = %v, want an error naming %s", tt.rules, err, tt.want)
		}
	}
}

func TestNilSet(t *testing.T) {
	t.Parallel()
	var s *Set
	if _, ok := s.Match("docker.io", "library/alpine", "3"); ok || s.Pins() || s.Len() != 0 {
		t.Fatal("a nil set matched")
	}
}

// BenchmarkMatch is the cost a manifest request pays for the rules: a
// list of 20 rules (globs, alternatives, a regexp) that the reference
// passes all the way down, matching none (the worst case).
func BenchmarkMatch(b *testing.B) {
	var rs []Rule
	for i := range 19 {
		rs = append(rs, Rule{Match: "ghcr.io/org" + string(rune('a'+i)) + "/{app,web,api}:v*", Pin: true})
	}
	rs = append(rs, Rule{Match: "*/**:/^v?[0-9]+\\.[0-9]+\\.[0-9]+$/", Immutable: true})
	s, err := Compile(rs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Match("docker.io", "library/alpine", "latest"); ok {
			b.Fatal("matched")
		}
	}
}
