package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// TestUpstreamCredentialProgramAndBandwidth: credential_helper,
// credential_command, credential_ttl and max_bandwidth are read from the
// file, make the upstream credentialed, and their mistakes stop start-up
// naming the key.
func TestUpstreamCredentialProgramAndBandwidth(t *testing.T) {
	testenv.NewCredHelper(t, "test", "me", "pw")
	c, err := loadWith(t, `upstreams:
  - url: https://123456789012.dkr.ecr.eu-west-1.amazonaws.com
    credential_helper: test
    credential_ttl: 6h
    max_bandwidth: 50MiB/s
  - url: https://ghcr.io
    credential_command: [docker-credential-test, get]
    max_bandwidth: "1048576"
    max_connections: 4
  - url: https://quay.io
`, nil)
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams
	if u[0].CredentialHelper != "test" || u[0].CredentialTTL != 6*time.Hour || u[0].MaxBandwidth != 50<<20 {
		t.Errorf("upstreams[0]: %+v", u[0])
	}
	if len(u[1].CredentialCommand) != 2 || u[1].CredentialCommand[0] != "docker-credential-test" || u[1].MaxBandwidth != 1<<20 || u[1].MaxConnections != 4 {
		t.Errorf("upstreams[1]: %+v", u[1])
	}
	if !u[0].Credentialed() || !u[1].Credentialed() || u[2].Credentialed() {
		t.Errorf("credentialed: %v %v %v, want true true false", u[0].Credentialed(), u[1].Credentialed(), u[2].Credentialed())
	}

	tests := []struct {
		name, entry, want string
	}{
		{"both programs", "credential_helper: test\n    credential_command: [docker-credential-test, get]", "credential_helper and credential_command are both set"},
		{"with a password", "credential_helper: test\n    username: me\n    password: pw", "a credential program and username/password are both set"},
		{"not on PATH", "credential_helper: nosuch", "credential program docker-credential-nosuch"},
		{"full program name", "credential_helper: docker-credential-test", "give the helper's name, e.g. ecr-login"},
		{"command not on PATH", "credential_command: [/nonexistent/token-printer]", "credential program /nonexistent/token-printer"},
		{"ttl without program", "credential_ttl: 1h", "credential_ttl is set without credential_helper or credential_command"},
		{"bad ttl", "credential_helper: test\n    credential_ttl: 6", "upstreams[0].credential_ttl: invalid duration"},
		{"bad rate", "max_bandwidth: fast", "upstreams[0].max_bandwidth: invalid rate"},
		{"negative connections", "max_connections: -1", "max_connections must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadWith(t, "upstreams:\n  - url: https://example.com\n    "+tt.entry+"\n", nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestUpstreamsDocRecipesLoad: every YAML recipe in docs/upstreams.md is a
// configuration serve accepts (its helpers put on PATH, its secret files
// made).
func TestUpstreamsDocRecipesLoad(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "upstreams.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`credential_helper: ([a-z0-9-]+)`).FindAllStringSubmatch(string(b), -1) {
		testenv.NewCredHelper(t, m[1], "me", "pw")
	}
	dir := t.TempDir()
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1)
	if len(blocks) < 10 {
		t.Fatalf("docs/upstreams.md has %d yaml recipes, want one per registry", len(blocks))
	}
	for i, blk := range blocks {
		yaml := regexp.MustCompile(`/run/secrets/[a-z-]+`).ReplaceAllStringFunc(blk[1], func(p string) string {
			local := filepath.Join(dir, filepath.Base(p))
			if err := os.WriteFile(local, []byte("token\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return local
		})
		if _, err := loadWith(t, yaml, nil); err != nil {
			t.Errorf("recipe %d of docs/upstreams.md does not load: %v\n%s", i+1, err, blk[1])
		}
	}
}
