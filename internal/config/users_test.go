package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestAccessUsers covers access.users, the per-user repository patterns
// (YAML only).
func TestAccessUsers(t *testing.T) {
	t.Parallel()
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadWith(t, "access:\n  htpasswd: "+htpasswd+"\n  private: authenticated\n  users:\n    alice: [myorg/*, ghcr.io/acme/*]\n    bob: []\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"alice": {"myorg/*", "ghcr.io/acme/*"}, "bob": {}}
	if !reflect.DeepEqual(c.Access.Users, want) {
		t.Errorf("users = %#v, want %#v", c.Access.Users, want)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"without htpasswd", "access:\n  users: {alice: [x/*]}\n", "access.users: users are listed but access.htpasswd is not set"},
		{"bad pattern", "access:\n  htpasswd: " + htpasswd + "\n  users: {alice: [\"a b\"]}\n", "access.users.alice[0]: invalid repository pattern"},
		{"not a mapping", "access:\n  users: [alice]\n", "access.users: want a mapping"},
		{"patterns not a list", "access:\n  users: {alice: x/*}\n", "access.users.alice: want a list"},
	} {
		if _, err := loadWith(t, tt.yaml, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}
