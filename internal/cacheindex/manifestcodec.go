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
