package clientconfig

import (
	"strings"
	"testing"
)

// TestParseMirrorRedacts: no mirror error echoes a password.
func TestParseMirrorRedacts(t *testing.T) {
	for _, s := range []string{"https://u:PW@mirror:5000", "http://u:PW@", "https://u:PW@host\x7f", "ftp://u:PW@host", "https://u:PW@host/path", "https://u:PW@host:99999"} {
		_, err := ParseMirror(s)
		if err == nil || strings.Contains(err.Error(), "PW") {
			t.Errorf("ParseMirror(%q): %v", s, err)
		}
	}
}
