// Package redact keeps secrets out of messages: the password of a URL's
// user information, whether or not the URL parses.
package redact

import "strings"

// URL returns s with the password of its user information (and, if there
// is no password, the user name too, which may be a token) replaced by
// "xxxxx". It does not parse s, so it works on what url.Parse refuses:
// a URL error must never print the secret the operator mistyped.
func URL(s string) string {
	rest := s
	prefix := ""
	if i := strings.Index(s, "://"); i >= 0 && isScheme(s[:i]) {
		prefix, rest = s[:i+3], s[i+3:]
	}
	// The user information ends at the last '@' of the string: a mistyped
	// password may hold a '/', '?' or '#' (which is why url.Parse refused
	// it), so none of them is a sure end. A query or path with an '@'
	// loses its start in the message; that is the price of never printing
	// a secret.
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword || strings.Contains(user, "/") {
		user = "xxxxx"
	} else {
		user += ":xxxxx"
	}
	return prefix + user + rest[at:]
}

// isScheme reports whether s is a URL scheme: a letter, then letters,
// digits, '+', '-' or '.'.
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}
