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
	mt, size, at, ok := scanManifest(v, func(ref []byte) { e.Refs = append(e.Refs, digest.Digest(ref)) })
	if !ok {
		return ManifestEntry{}, false
	}
	e.MediaType, e.Size, e.LastAccess = string(mt), size, at
	return e, true
}

// scanManifest reads fastManifest's shape without allocating: each
// reference is passed to ref as a slice of v (valid while v is), the media
// type is returned as one. On false, ref may have seen some of the
// references: the caller drops what it collected and decodes the entry
// another way.
func scanManifest(v []byte, ref func([]byte)) (mediaType []byte, size int64, at time.Time, ok bool) {
	str := func(b []byte) ([]byte, []byte, bool) { // b starts after the opening quote
		i := bytes.IndexByte(b, '"')
		if i < 0 || bytes.IndexByte(b[:i], '\\') >= 0 {
			return nil, nil, false
		}
		return b[:i], b[i+1:], true
	}
	rest, ok := bytes.CutPrefix(v, []byte(`{"mediaType":"`))
	if !ok {
		return nil, 0, at, false
	}
	if mediaType, rest, ok = str(rest); !ok {
		return nil, 0, at, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"size":`)); !ok {
		return nil, 0, at, false
	}
	n := 0
	for n < len(rest) && (rest[n] == '-' || rest[n] >= '0' && rest[n] <= '9') {
		n++
	}
	size, err := strconv.ParseInt(string(rest[:n]), 10, 64)
	if err != nil {
		return nil, 0, at, false
	}
	rest = rest[n:]
	if r, found := bytes.CutPrefix(rest, []byte(`,"refs":[`)); found {
		rest = r
		for {
			if rest, ok = bytes.CutPrefix(rest, []byte(`"`)); !ok {
				return nil, 0, at, false
			}
			var d []byte
			if d, rest, ok = str(rest); !ok {
				return nil, 0, at, false
			}
			ref(d)
			if r, more := bytes.CutPrefix(rest, []byte(`,`)); more {
				rest = r
				continue
			}
			if rest, ok = bytes.CutPrefix(rest, []byte(`]`)); !ok {
				return nil, 0, at, false
			}
			break
		}
	}
	if r, found := bytes.CutPrefix(rest, []byte(`,"lastAccess":"`)); found {
		var ts []byte
		if ts, rest, ok = str(r); !ok {
			return nil, 0, at, false
		}
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if err != nil {
			return nil, 0, at, false
		}
		at = t
	}
	return mediaType, size, at, bytes.Equal(rest, []byte(`}`))
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
