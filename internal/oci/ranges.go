package oci

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The byte ranges of a blob GET (RFC 9110 14), as the mirror answers them.
// A pure rule of the API, kept here with the other wire rules (and its fuzz
// target, which then builds without the server's dependencies).

// ByteRange is one satisfiable range of a blob.
type ByteRange struct{ Start, Length int64 }

// ContentRange is the Content-Range header of the range in a blob of size.
func (rg ByteRange) ContentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", rg.Start, rg.Start+rg.Length-1, size)
}

// MaxRanges bounds the ranges of one request: a client asking more is
// told to ask fewer (416), never answered with the whole blob.
const MaxRanges = 16

// ParseRange is the one range rule of the API, for stored and growing
// blobs alike: the byte ranges of h against size, in the order asked. No
// header means the whole blob (no ranges). Ranges starting beyond the blob
// are dropped, as RFC 9110 says; when none is left, or one is malformed,
// or there are more than MaxRanges, the answer is RANGE_INVALID (416).
func ParseRange(h string, size int64) ([]ByteRange, error) {
	if h == "" {
		return nil, nil
	}
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok {
		return nil, Errorf(ErrRangeInvalid, "unsupported range unit in %q; use bytes=start-end", h)
	}
	if size < 0 {
		return nil, Errorf(ErrRangeInvalid, "the blob's size is not known yet; retry without Range")
	}
	parts := strings.Split(spec, ",")
	if len(parts) > MaxRanges {
		return nil, Errorf(ErrRangeInvalid, "%d ranges in one request; ask at most %d", len(parts), MaxRanges)
	}
	var out []ByteRange
	for _, p := range parts {
		rg, ok, err := parseOneRange(strings.TrimSpace(p), size)
		if err != nil {
			return nil, Errorf(ErrRangeInvalid, "malformed range %q", h)
		}
		if ok {
			out = append(out, rg)
		}
	}
	if len(out) == 0 {
		return nil, Errorf(ErrRangeInvalid, "range %q starts beyond the blob's %d bytes", h, size)
	}
	return out, nil
}

// parseOneRange reads one "first-last", "first-" or "-suffix"; ok is false
// for a well-formed range that lies beyond the blob.
func parseOneRange(spec string, size int64) (ByteRange, bool, error) {
	bad := errors.New("malformed")
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return ByteRange{}, false, bad
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" { // suffix: the last b bytes
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 0 {
			return ByteRange{}, false, bad
		}
		if n == 0 || size == 0 {
			return ByteRange{}, false, nil
		}
		n = min(n, size)
		return ByteRange{size - n, n}, true, nil
	}
	first, err := strconv.ParseInt(a, 10, 64)
	if err != nil || first < 0 {
		return ByteRange{}, false, bad
	}
	last := size - 1
	if b != "" {
		if last, err = strconv.ParseInt(b, 10, 64); err != nil || last < first {
			return ByteRange{}, false, bad
		}
		last = min(last, size-1)
	}
	if first >= size {
		return ByteRange{}, false, nil
	}
	return ByteRange{first, last - first + 1}, true, nil
}
