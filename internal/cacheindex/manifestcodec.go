package cacheindex

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
)

// decodeManifest decodes a manifest entry. Entries are written by
// json.Marshal, whose output for ManifestEntry has one shape; that shape is
// read by hand (a hundred thousand entries are read at every Open and
// every eviction pass, and encoding/json is most of that time), anything
// else by encoding/json.
func decodeManifest(v []byte) (ManifestEntry, error) {
	if e, ok := fastManifest(v); ok {
		return e, nil
	}
	var e ManifestEntry
	err := json.Unmarshal(v, &e)
	return e, err
}

// fastManifest reads {"mediaType":"…","size":N[,"refs":["…",…]][,"lastAccess":"…"]}
// with no escapes in its strings, or reports false.
func fastManifest(v []byte) (e ManifestEntry, ok bool) {
	str := func(b []byte) (string, []byte, bool) { // b starts after the opening quote
		i := bytes.IndexByte(b, '"')
		if i < 0 || bytes.IndexByte(b[:i], '\\') >= 0 {
			return "", nil, false
		}
		return string(b[:i]), b[i+1:], true
	}
	rest, ok := bytes.CutPrefix(v, []byte(`{"mediaType":"`))
	if !ok {
		return e, false
	}
	if e.MediaType, rest, ok = str(rest); !ok {
		return e, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"size":`)); !ok {
		return e, false
	}
	n := 0
	for n < len(rest) && (rest[n] == '-' || rest[n] >= '0' && rest[n] <= '9') {
		n++
	}
	size, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	if err != nil {
		return e, false
	}
	e.Size, rest = size, rest[n:]
	if r, found := bytes.CutPrefix(rest, []byte(`,"refs":[`)); found {
		rest = r
		for {
			if rest, ok = bytes.CutPrefix(rest, []byte(`"`)); !ok {
				return e, false
			}
			var ref string
			if ref, rest, ok = str(rest); !ok {
				return e, false
			}
			e.Refs = append(e.Refs, digest.Digest(ref))
			if r, more := bytes.CutPrefix(rest, []byte(`,`)); more {
				rest = r
				continue
			}
			if rest, ok = bytes.CutPrefix(rest, []byte(`]`)); !ok {
				return e, false
			}
			break
		}
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"lastAccess":"`)); found {
		var at string
		if at, rest, ok = str(r); !ok {
			return e, false
		}
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return e, false
		}
		e.LastAccess = t
	}
	return e, bytes.Equal(rest, []byte(`}`))
}

// manifestSize checks a manifest entry decodes and returns its size,
// without keeping its references (Open's check of every entry).
func manifestSize(v []byte) (int64, error) {
	if e, ok := fastManifestSize(v); ok {
		return e, nil
	}
	e, err := decodeManifest(v)
	return e.Size, err
}

// fastManifestSize is fastManifest's reading of the size, with the rest of
// the shape checked but nothing allocated; false sends the caller to the
// full decoder.
func fastManifestSize(v []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(v, []byte(`{"mediaType":"`))
	if !ok {
		return 0, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return 0, false
	}
	if rest, ok = bytes.CutPrefix(rest[i+1:], []byte(`,"size":`)); !ok {
		return 0, false
	}
	var size int64
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' && n < 18 {
		size = size*10 + int64(rest[n]-'0')
		n++
	}
	if n == 0 {
		return 0, false
	}
	rest = rest[n:]
	if r, found := bytes.CutPrefix(rest, []byte(`,"refs":[`)); found {
		end := bytes.IndexByte(r, ']')
		if end < 0 || bytes.IndexByte(r[:end], '\\') >= 0 {
			return 0, false
		}
		rest = r[end+1:]
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"lastAccess":"`)); found {
		end := bytes.IndexByte(r, '"')
		if end < 0 {
			return 0, false
		}
		if _, err := time.Parse(time.RFC3339Nano, string(r[:end])); err != nil {
			return 0, false
		}
		rest = r[end+1:]
	}
	return size, bytes.Equal(rest, []byte(`}`))
}
