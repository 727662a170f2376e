package cli

import (
	"strings"
	"testing"
)

// TestFlagTypos: an unknown flag is answered with the closest flag of the
// command, or a pointer to its --help.
func TestFlagTypos(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--fresness", "1m"}, "unknown flag: --fresness; did you mean --freshness?"},
		{[]string{"serve", "--upstream-ulr", "x"}, "unknown flag: --upstream-ulr; did you mean --upstream-url?"},
		{[]string{"serve", "--colour"}, "unknown flag: --colour (see regcache serve --help for the flags it takes)"},
	} {
		root := NewRoot()
		root.SetArgs(tc.args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}
