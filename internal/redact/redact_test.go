package redact

import (
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://mirror:PW@host":        "https://mirror:xxxxx@host",
		"https://mirror:PW@":            "https://mirror:xxxxx@",
		"ftp://mirror:PW@host/path?q=1": "ftp://mirror:xxxxx@host/path?q=1",
		"https://tok3n@host":            "https://xxxxx@host",
		"mirror:PW@host:5000":           "mirror:xxxxx@host:5000",
		"https://a:b@c:PW@host\x7f":     "https://a:xxxxx@host\x7f",
		"https://host/p@th":             "https://xxxxx@th",
		"https://u:pa/ss@host/v2":       "https://u:xxxxx@host/v2",
		"http://127.0.0.1:5000":         "http://127.0.0.1:5000",
		"":                              "",
		"https://bob:p#ss@ghcr.io":      "https://bob:xxxxx@ghcr.io",
		"https://bob:p?ss@ghcr.io/v2":   "https://bob:xxxxx@ghcr.io/v2",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzURL: whatever the input, a password placed in the user information
// never survives.
func FuzzURL(f *testing.F) {
	f.Add("https://", "host/x")
	f.Add("", "h")
	f.Fuzz(func(t *testing.T, prefix, rest string) {
		const pw = "S3C?R#E/Tpw"
		if strings.ContainsAny(prefix, "/?#@") || strings.Contains(rest, "S3C") || strings.Contains(prefix, "S3C") {
			return
		}
		s := prefix + "user:" + pw + "@" + rest
		if strings.Contains(URL(s), "S3C") {
			t.Fatalf("URL(%q) = %q keeps the password", s, URL(s))
		}
	})
}
