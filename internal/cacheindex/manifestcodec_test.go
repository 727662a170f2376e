package cacheindex

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestDecodeManifest: the hand-read shape gives what encoding/json gives,
// and anything else falls back to it.
func TestDecodeManifest(t *testing.T) {
	at := time.Date(2026, 12, 3, 13, 1, 2, 345678901, time.FixedZone("x", 3600))
	entries := []ManifestEntry{
		{},
		{MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1234},
		{MediaType: "m", Size: 1, Refs: []digest.Digest{digest.FromString("a"), digest.FromString("b")}},
		{MediaType: "m", Size: 9, Refs: []digest.Digest{digest.FromString("a")}, LastAccess: at},
		{MediaType: "m<&>\"", Size: 9, LastAccess: at.UTC()},
	}
	for _, e := range entries {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var want ManifestEntry
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if size, err := manifestSize(raw); err != nil || size != want.Size {
			t.Errorf("%s: size %d %v", raw, size, err)
		}
		got, err := decodeManifest(raw)
		if err != nil || !reflect.DeepEqual(got, want) || !got.LastAccess.Equal(want.LastAccess) {
			t.Errorf("%s: %+v %v, want %+v", raw, got, err, want)
		}
	}
	for _, bad := range []string{`{"mediaType":"m","size":1`, `{"size":1,"mediaType":"m"}`, `{"mediaType":"m","size":1,"refs":["a",]}`, `not json`} {
		_, fast := fastManifest([]byte(bad))
		_, err := decodeManifest([]byte(bad))
		var e ManifestEntry
		jerr := json.Unmarshal([]byte(bad), &e)
		if fast || (err == nil) != (jerr == nil) {
			t.Errorf("%s: fast %v, err %v, json %v", bad, fast, err, jerr)
		}
	}
}
