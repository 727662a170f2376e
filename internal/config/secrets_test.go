package config

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestRedactedCoversEverySecretOption: every option the table marks secret
// (and so SecretKeys lists) set to a marker, alone, leaves no trace of the
// marker in Redacted's Config (as logged, printed or marshalled).
func TestRedactedCoversEverySecretOption(t *testing.T) {
	n := 0
	for _, o := range options {
		if o.secret == notSecret {
			continue
		}
		n++
		marker := "MARKER-" + o.flag
		v := marker
		if o.secret == secretInURL {
			v = "redis://:" + marker + "@redis.example:6379/0"
		}
		var c Config
		if err := o.set(&c, v); err != nil {
			t.Fatalf("%s: %v", o.flag, err)
		}
		if !strings.Contains(fmt.Sprintf("%+v", c), marker) {
			t.Fatalf("%s: setting it did not reach the Config", o.flag)
		}
		r := c.Redacted()
		js, _ := json.Marshal(r)
		if out := fmt.Sprintf("%+v %s", r, js); strings.Contains(out, marker) {
			t.Errorf("Redacted shows %s: %s", o.flag, out)
		}
		if o.secret == secretInURL && !strings.Contains(fmt.Sprintf("%+v", r), "redis.example") {
			t.Errorf("Redacted hides %s's host too", o.flag)
		}
	}
	keys := SecretKeys()
	for _, k := range []string{"admin_token", "upstreams[].password", "storage.s3.secret_key", "cluster.secret", "cluster.redis"} {
		if !slices.Contains(keys, k) {
			t.Errorf("SecretKeys %v lacks %s", keys, k)
		}
	}
	if n != len(keys) {
		t.Errorf("%d secret options, SecretKeys lists %d", n, len(keys))
	}
}
