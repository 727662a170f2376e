package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/testenv"
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
	// Keyless cosign: a trusted root read from a file (a test Sigstore
	// instance's); a missing one is named by its key.
	ss := testenv.NewSigstore(t)
	keyless := "rules:\n  - match: ghcr.io/myorg/*\n    verify:\n      any_of:\n        - cosign: {identity: 'https://github\\.com/myorg/.+', issuer: https://token.actions.githubusercontent.com, trusted_root: %s}\n"
	out, err = runCLI(t, "policy", "lint", write("keyless.yaml", fmt.Sprintf(keyless, ss.TrustedRoot)))
	if err != nil || !strings.Contains(out, "ok: mode enforce, 1 rules") {
		t.Errorf("lint of a keyless rule: %q, %v", out, err)
	}
	if _, err := runCLI(t, "policy", "lint", write("noroot.yaml", fmt.Sprintf(keyless, filepath.Join(dir, "gone.json")))); err == nil ||
		!strings.Contains(err.Error(), "policy.rules[0] (line 2).verify.any_of[0].cosign.trusted_root: "+filepath.Join(dir, "gone.json")) {
		t.Errorf("lint of a keyless rule without its trusted root: %v", err)
	}
	typo := write("typo.yaml", "rules:\n  - match: a/b\n    dney: true\n")
	if _, err := runCLI(t, "policy", "lint", typo); err == nil || !strings.Contains(err.Error(), "policy.rules[0].dney: unknown key (line 3); did you mean deny?") {
		t.Errorf("lint of a typo: %v", err)
	}
}

// TestPolicyCheck: regcache policy check asks a running mirror what its
// policy decides for an image and why (the digest, the rule, the reason),
// exits 1 for what it would refuse, and pulls nothing: no blob is fetched.
func TestPolicyCheck(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(file, []byte("rules:\n  - {match: docker.io/library/multi, deny: true}\n  - {match: 'docker.io/library/*', allow: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	adminAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	stop := startServe(t, []string{"REGCACHE_ADDR=" + addr, "REGCACHE_ADMIN_ADDR=" + adminAddr, "REGCACHE_DATA=" + filepath.Join(dir, "data"),
		"REGCACHE_UPSTREAM_URL=" + hub.URL, "REGCACHE_UPSTREAM_NAME=docker.io", "REGCACHE_POLICY_FILE=" + file, "HTTPS_PROXY=http://127.0.0.1:9"},
		filepath.Join(dir, "regcache.log"), "http://"+addr+"/v2/")
	defer stop()

	out, err := runCLI(t, "policy", "check", "--admin", adminAddr, "single")
	if err != nil || !strings.Contains(out, "docker.io/library/single:latest -> "+string(imgs.Single.Digest)) || !strings.Contains(out, "allow by policy.rules[1] docker.io/library/*") {
		t.Errorf("an allowed image: %v\n%s", err, out)
	}
	out, err = runCLI(t, "policy", "check", "--admin", adminAddr, "docker.io/library/multi@"+string(imgs.ManifestList.Digest))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(out, "deny by policy.rules[0] docker.io/library/multi: denied by the policy") {
		t.Errorf("a denied image: %v\n%s", err, out)
	}
	if _, err := runCLI(t, "policy", "check", "--admin", adminAddr, "quay.io/x/y"); err == nil || !strings.Contains(err.Error(), "registry quay.io is not an upstream of this mirror") {
		t.Errorf("an unknown registry: %v", err)
	}
	if n := hub.Count("GET", testenv.KindBlob); n != 0 {
		t.Errorf("a policy check fetched %d blobs; it pulls nothing", n)
	}
}

// TestConfigPrintPolicy: config print names the policy in effect.
func TestConfigPrintPolicy(t *testing.T) {
	file := filepath.Join(t.TempDir(), "regcache.yaml")
	if err := os.WriteFile(file, []byte("policy:\n  mode: audit\n  rules:\n    - {match: docker.io/library/*, allow: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "config", "print", "--config", file, "--data", t.TempDir())
	if err != nil || !strings.Contains(out, "policy: audit mode, 1 rules") {
		t.Errorf("config print: %v\n%s", err, out)
	}
}
