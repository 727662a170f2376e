package oci

import (
	"errors"
	"testing"
)

// FuzzParseRange: whatever the header, a range that parses lies inside
// the blob, and one that does not is RANGE_INVALID.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"", "bytes=0-9", "bytes=-5", "bytes=10-", "bytes=-0", "bytes=0-1,5-6", "bytes=x-y", "bytes=9223372036854775807-", "bytes= 1 - 2"} {
		f.Add(s, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
		}
		ranges, err := ParseRange(h, size)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != ErrRangeInvalid {
				t.Fatalf("ParseRange(%q, %d): error %v, want RANGE_INVALID", h, size, err)
			}
			return
		}
		if h != "" && len(ranges) == 0 {
			t.Fatalf("ParseRange(%q, %d): a Range header answered with the whole blob", h, size)
		}
		if len(ranges) > MaxRanges {
			t.Fatalf("ParseRange(%q, %d): %d ranges", h, size, len(ranges))
		}
		for _, rg := range ranges {
			if rg.Start < 0 || rg.Length <= 0 || rg.Start+rg.Length > size || rg.Start+rg.Length < rg.Start {
				t.Fatalf("ParseRange(%q, %d) = %d+%d, outside the blob", h, size, rg.Start, rg.Length)
			}
		}
	})
}
