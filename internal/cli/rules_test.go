package cli

import (
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// TestCacheRulesOffline: on a stopped mirror's data directory, the
// configuration's rules name each tag's rule in `cache ls`, and `cache
// prune` keeps the images a rule pins whatever size it asks for.
func TestCacheRulesOffline(t *testing.T) {
	t.Parallel()
	hub := testenv.NewHub(t)
	hub.Seed(t)
	data := t.TempDir()
	t.Run("populate", func(t *testing.T) {
		m := apptest.Start(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data})
		pullImage(t, m.Host+"/single:latest", amd64)
		pullImage(t, m.Host+"/multi:latest", amd64)
		waitIndexed(t, m.App, 6)
	}) // the mirror stops here
	cfg := writeConfig(t, "data: "+data+"\nrules:\n  - match: docker.io/library/single\n    pin: true\n")
	out, err := runCLI(t, "cache", "ls", "--config", cfg)
	if err != nil || !strings.Contains(out, "rules[0] docker.io/library/single") {
		t.Fatalf("ls: %v\n%s", err, out)
	}
	out, err = runCLI(t, "cache", "prune", "--to-size", "1", "--config", cfg)
	if err != nil || strings.Contains(out, "library/single") || !strings.Contains(out, "library/multi") {
		t.Errorf("prune to 1 byte with single pinned: %v\n%s", err, out)
	}
	out, err = runCLI(t, "cache", "ls", "--config", cfg)
	if err != nil || !strings.Contains(out, "library/single") {
		t.Errorf("ls after the prune: %v\n%s", err, out)
	}
	for line := range strings.Lines(out) {
		if strings.Contains(line, "library/single") && strings.Contains(line, "not stored") {
			t.Errorf("the pinned image lost content: %s", line)
		}
	}
}
