package config

import (
	"strings"
	"testing"
)

// TestAdminTokenMinimum: a short admin_token (from the file, the
// environment or a flag) stops start-up, as a short cluster.secret does;
// none, or one of 16 characters, is taken.
func TestAdminTokenMinimum(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		env        map[string]string
		args       []string
	}{
		{"file", "admin_token: abc\n", nil, nil},
		{"env", "", map[string]string{"REGCACHE_ADMIN_TOKEN": "0123456789abcde"}, nil},
		{"flag", "", nil, []string{"--admin-token", "short"}},
	} {
		_, err := loadWith(t, tc.yaml, tc.env, tc.args...)
		if err == nil || !strings.Contains(err.Error(), "admin_token") || !strings.Contains(err.Error(), "16 characters") {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	for _, tok := range []string{"", "0123456789abcdef"} {
		if _, err := loadWith(t, "", map[string]string{"REGCACHE_ADMIN_TOKEN": tok}); err != nil {
			t.Errorf("token %q: %v", tok, err)
		}
	}
}
