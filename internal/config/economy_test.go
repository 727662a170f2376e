package config

import (
	"strings"
	"testing"
)

// TestBudgetReserve: budget_reserve is a count or a percentage, from each
// source, 10% by default; bad values name the fix.
func TestBudgetReserve(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		yaml string
		env  map[string]string
		args []string
		want BudgetReserve
		err  string
	}{
		{name: "default", want: BudgetReserve{Percent: 10}},
		{name: "file count", yaml: "budget_reserve: 20\n", want: BudgetReserve{Count: 20}},
		{name: "env percent", env: map[string]string{"REGCACHE_BUDGET_RESERVE": "25%"}, want: BudgetReserve{Percent: 25}},
		{name: "flag zero", args: []string{"--budget-reserve", "0"}, want: BudgetReserve{}},
		{name: "bad percent", yaml: "budget_reserve: 120%\n", err: `config: budget_reserve: invalid reserve "120%": a percentage from 0 to 100`},
		{name: "bad count", args: []string{"--budget-reserve", "-3"}, err: `config: --budget-reserve: invalid reserve "-3": a count of pulls`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := loadWith(t, c.yaml, c.env, c.args...)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.BudgetReserve != c.want {
				t.Errorf("BudgetReserve %+v, want %+v", got.BudgetReserve, c.want)
			}
		})
	}
}

// TestFallbackChain: upstreams[].fallback and trusted_tags are read from
// YAML, and a chain naming no upstream, the upstream itself, or one twice
// is refused with the key.
func TestFallbackChain(t *testing.T) {
	t.Parallel()
	good := `
upstreams:
  - name: docker.io
    url: https://registry-1.docker.io
    fallback: [mirror.gcr.io, artifactory.example]
  - name: mirror.gcr.io
    url: https://mirror.gcr.io
    trusted_tags: true
  - name: artifactory.example
    url: https://artifactory.example
`
	c, err := loadWith(t, good, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Upstreams[0].Fallback, ","); got != "mirror.gcr.io,artifactory.example" {
		t.Errorf("fallback %q", got)
	}
	if c.Upstreams[0].TrustedTags || !c.Upstreams[1].TrustedTags || c.Upstreams[2].TrustedTags {
		t.Errorf("trusted_tags %v %v %v", c.Upstreams[0].TrustedTags, c.Upstreams[1].TrustedTags, c.Upstreams[2].TrustedTags)
	}
	for _, b := range []struct{ yaml, want string }{
		{strings.Replace(good, "[mirror.gcr.io, artifactory.example]", "[quay.io]", 1), `config: upstreams[0].fallback[0]: no upstream is named "quay.io"`},
		{strings.Replace(good, "[mirror.gcr.io, artifactory.example]", "[docker.io]", 1), `config: upstreams[0].fallback[0]: "docker.io" is the upstream itself`},
		{strings.Replace(good, "[mirror.gcr.io, artifactory.example]", "[mirror.gcr.io, mirror.gcr.io]", 1), `config: upstreams[0].fallback[1]: "mirror.gcr.io" is named twice`},
		{strings.Replace(good, "trusted_tags: true", "trusted_tags: [yes]", 1), `upstreams`},
	} {
		if _, err := loadWith(t, b.yaml, nil); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("error %v, want %q", err, b.want)
		}
	}
}
