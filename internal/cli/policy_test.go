package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPolicyLint(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "mode: audit\nrules:\n  - match: docker.io/library/*\n    allow: true\n  - match: docker.io/*\n    cooldown: 72h\n")
	out, err := runCLI(t, "policy", "lint", good)
	if err != nil || !strings.Contains(out, "ok: mode audit, 2 rules") {
		t.Errorf("lint of a good file: %q, %v", out, err)
	}
	bad := write("bad.yaml", "rules:\n  - match: docker.io/library/*\n    allow: true\n  - match: ghcr.io\n    deny: true\n")
	if _, err := runCLI(t, "policy", "lint", bad); err == nil || !strings.Contains(err.Error(), `policy.rules[1] (line 4).match: "ghcr.io": no repository`) {
		t.Errorf("lint of a bad pattern: %v", err)
	}
	typo := write("typo.yaml", "rules:\n  - match: a/b\n    dney: true\n")
	if _, err := runCLI(t, "policy", "lint", typo); err == nil || !strings.Contains(err.Error(), "policy.rules[0].dney: unknown key (line 3); did you mean deny?") {
		t.Errorf("lint of a typo: %v", err)
	}
}
