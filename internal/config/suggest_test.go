package config

import "testing"

func TestSuggest(t *testing.T) {
	t.Parallel()
	keys := []string{"freshness", "fill_timeout", "addr", "admin_addr", "data", "username", "password"}
	for _, tc := range []struct{ in, want string }{
		{"freshnes", "freshness"},
		{"fresness", "freshness"},
		{"usrname", "username"},
		{"pasword", "password"},
		{"adr", "addr"},
		{"FRESHNESS", "freshness"},
		{"fersh", ""},
		{"storage", ""},
		{"x", ""},
		{"", ""},
	} {
		if got := Suggest(tc.in, keys); got != tc.want {
			t.Errorf("Suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"abc", "abc", 0},
		{"abc", "acb", 1}, {"kitten", "sitting", 3}, {"freshnes", "freshness", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
