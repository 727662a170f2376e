package cli

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestConfigPrint: the command reports the flag it was given as the source,
// and a bad configuration is the error serve would give.
func TestConfigPrint(t *testing.T) {
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"config", "print", "--json", "--freshness", "7m", "--data", t.TempDir()})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Settings []struct{ Key, Value, Source string }
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	found := false
	for _, s := range got.Settings {
		if s.Key == "freshness" {
			found = s.Value == "7m0s" && s.Source == "flag --freshness"
		}
	}
	if !found {
		t.Errorf("freshness not reported as set by its flag:\n%s", out.String())
	}
	root = NewRoot()
	root.SetArgs([]string{"config", "print", "--freshness", "10"})
	if err := root.Execute(); err == nil {
		t.Error("a bad duration printed a configuration")
	}
}
