package config

import (
	"strings"
	"testing"
)

// TestUpstreamURLErrorsRedacted: an upstream URL that is refused is named
// without the password typed into it, parsable or not.
func TestUpstreamURLErrorsRedacted(t *testing.T) {
	for _, raw := range []string{"ftp://mirror:PW@host", "https://mirror:PW@", "https://mirror:PW@host", "https://mirror:PW@host\x7f", "https://mirror:PW@host/path"} {
		_, err := Load(nil, func(k string) (string, bool) {
			if k == "REGCACHE_UPSTREAM_URL" {
				return raw, true
			}
			return "", false
		})
		if err == nil || strings.Contains(err.Error(), "PW") {
			t.Errorf("REGCACHE_UPSTREAM_URL=%q: %v", raw, err)
		}
	}
}
