package metrics

import (
	"strconv"
	"testing"
)

// TestCode: the code label is the status in decimal, for every status.
func TestCode(t *testing.T) {
	for _, s := range []int{0, 1, 99, 100, 200, 206, 304, 404, 429, 503, 599, 600, 999} {
		if got := Code(s); got != strconv.Itoa(s) {
			t.Errorf("Code(%d) = %q", s, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Code(200) }); n != 0 {
		t.Errorf("Code(200) allocates %.0f times", n)
	}
}
