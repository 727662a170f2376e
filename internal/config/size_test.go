package config

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "0", want: 0},
		{in: "1048576", want: 1 << 20},
		{in: "200GiB", want: 200 << 30},
		{in: "200gib", want: 200 << 30},
		{in: "500MB", want: 500_000_000},
		{in: "500M", want: 500_000_000},
		{in: "1.5 KiB", want: 1536},
		{in: " 2 TB ", want: 2_000_000_000_000},
		{in: "1Ti", want: 1 << 40},
		{in: "1PiB", want: 1 << 50},
		{in: "10k", want: 10_000},
		{in: "7b", want: 7},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "", wantErr: `invalid size "" (want a byte count or a number with a unit, e.g. 500MB, 200GiB)`},
		{in: "GiB", wantErr: `invalid size "GiB" (want a byte count or a number with a unit, e.g. 500MB, 200GiB)`},
		{in: "12XB", wantErr: `invalid size "12XB" (want a byte count or a number with a unit, e.g. 500MB, 200GiB)`},
		{in: "1.2.3MB", wantErr: `invalid size "1.2.3MB" (want a byte count or a number with a unit, e.g. 500MB, 200GiB)`},
		{in: "-1", wantErr: `invalid size "-1": must not be negative`},
		{in: "9223372036854775808", wantErr: `invalid size "9223372036854775808": too large`},
		{in: "8388608TiB", wantErr: `invalid size "8388608TiB": too large`},
		{in: "9000000.5TiB", wantErr: `invalid size "9000000.5TiB": too large`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := parseSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("parseSize(%q) = %d, %v; want error %s", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestMaxSizePercent: storage.max_size takes a share of the file system.
func TestMaxSizePercent(t *testing.T) {
	for v, want := range map[string]float64{"80%": 80, " 12.5 %": 12.5, "100%": 100} {
		c, err := Load(nil, func(k string) (string, bool) {
			if k == "REGCACHE_MAX_SIZE" {
				return v, true
			}
			return "", false
		})
		if err != nil || c.Storage.MaxSizePercent != want || c.Storage.MaxSize != 0 {
			t.Errorf("%q: %v %v %v", v, c.Storage.MaxSizePercent, c.Storage.MaxSize, err)
		}
	}
	for _, v := range []string{"0%", "101%", "x%", "-5%"} {
		_, err := Load(nil, func(k string) (string, bool) {
			if k == "REGCACHE_MAX_SIZE" {
				return v, true
			}
			return "", false
		})
		if err == nil || !strings.Contains(err.Error(), "percentage") {
			t.Errorf("%q: %v", v, err)
		}
	}
}

// TestMaxBlobSize: storage.max_blob_size defaults to 64 GiB and takes
// sizes with units; 0 is refused.
func TestMaxBlobSize(t *testing.T) {
	env := func(v string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k == "REGCACHE_MAX_BLOB_SIZE" && v != "" {
				return v, true
			}
			return "", false
		}
	}
	if c, err := Load(nil, env("")); err != nil || c.Storage.MaxBlobSize != 64<<30 {
		t.Errorf("default: %d %v", c.Storage.MaxBlobSize, err)
	}
	if c, err := Load(nil, env("1GiB")); err != nil || c.Storage.MaxBlobSize != 1<<30 {
		t.Errorf("1GiB: %d %v", c.Storage.MaxBlobSize, err)
	}
	if _, err := Load(nil, env("0")); err == nil {
		t.Error("0 accepted")
	}
}

// TestScrubOptions: the scrub's pace and off switch, from each source, and
// admin_token from the file.
func TestScrubOptions(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	c, err := Load(nil, env("REGCACHE_SCRUB_INTERVAL", "0", "REGCACHE_SCRUB_RATE", "1MiB"))
	if err != nil || c.Storage.ScrubInterval != 0 || c.Storage.ScrubRate != 1<<20 {
		t.Errorf("env: %+v %v", c.Storage, err)
	}
	if _, err := Load(nil, env("REGCACHE_SCRUB_RATE", "0")); err == nil || !strings.Contains(err.Error(), "scrub-interval 0") {
		t.Errorf("a zero rate: %v", err)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("admin_token: s3cret-admin-token-1\nstorage:\n  scrub_interval: 24h\n  scrub_rate: 10MB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = Load(nil, env("REGCACHE_CONFIG", path))
	if err != nil || c.Storage.ScrubInterval != 24*time.Hour || c.Storage.ScrubRate != 10e6 || c.AdminToken != "s3cret-admin-token-1" {
		t.Errorf("file: %+v %q %v", c.Storage, c.AdminToken, err)
	}
}
