package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps a lower-case size suffix to its multiplier: SI (kB = 1000)
// and IEC (KiB = 1024), with the trailing "b" optional.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1e3, "kb": 1e3, "ki": 1 << 10, "kib": 1 << 10,
	"m": 1e6, "mb": 1e6, "mi": 1 << 20, "mib": 1 << 20,
	"g": 1e9, "gb": 1e9, "gi": 1 << 30, "gib": 1 << 30,
	"t": 1e12, "tb": 1e12, "ti": 1 << 40, "tib": 1 << 40,
	"p": 1e15, "pb": 1e15, "pi": 1 << 50, "pib": 1 << 50,
}

// ParseSize parses a byte size as the options do ("50GiB", "500MB", a
// byte count).
func ParseSize(s string) (int64, error) { return parseSize(s) }

// parseSize parses a byte size: a plain byte count ("1048576") or a number
// with a unit, SI or IEC, case-insensitive, optionally spaced and fractional
// ("500MB", "200GiB", "1.5 tb"). The result is rounded down to whole bytes.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, invalidSize(s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("invalid size %q: too large", s)
		}
		return n * mult, nil
	} else if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, invalidSize(s)
	}
	b := f * float64(mult)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return int64(b), nil
}

// invalidSize is the error for a size that does not parse.
func invalidSize(s string) error {
	return fmt.Errorf("invalid size %q (want a byte count or a number with a unit, e.g. 500MB, 200GiB)", s)
}

// parseRate parses bytes per second: a size, optionally followed by "/s"
// ("50MiB/s", "100MB", "1048576").
func parseRate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimSuffix(t, "/s") // not "ps": 100Mbps would read as bytes
	n, err := parseSize(t)
	if err != nil {
		return 0, fmt.Errorf("invalid rate %q (want bytes per second, e.g. 50MiB/s, 100MB/s)", s)
	}
	return n, nil
}
