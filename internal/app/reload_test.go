package app

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/rules"
)

// TestReloadNamesEveryOption: for every option key, a SIGHUP that changes
// it names it as applied or as needing a restart, as its reload class says;
// the configuration in effect takes the live ones and keeps the others.
// A key added to the option table without a case here fails the test.
func TestReloadNamesEveryOption(t *testing.T) {
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": "http://127.0.0.1:9"})
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	net8 := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	change := map[string]func(c *config.Config){
		"addr":                     func(c *config.Config) { c.Addr = ":6000" },
		"admin_addr":               func(c *config.Config) { c.AdminAddr = "127.0.0.1:6001" },
		"admin_token":              func(c *config.Config) { c.AdminToken = "a-new-admin-token-of-some-length" },
		"data":                     func(c *config.Config) { c.Data = dir },
		"freshness":                func(c *config.Config) { c.Freshness = 2 * time.Hour },
		"fill_timeout":             func(c *config.Config) { c.FillTimeout = time.Hour },
		"negative_ttl":             func(c *config.Config) { c.NegativeTTL = time.Minute },
		"shutdown_timeout":         func(c *config.Config) { c.ShutdownTimeout = 5 * time.Second },
		"probe_interval":           func(c *config.Config) { c.ProbeInterval = time.Minute },
		"prefetch.enabled":         func(c *config.Config) { c.Prefetch.Enabled = !c.Prefetch.Enabled },
		"prefetch.parallel":        func(c *config.Config) { c.Prefetch.Parallel = 3 },
		"budget_reserve":           func(c *config.Config) { c.BudgetReserve = config.BudgetReserve{Count: 7} },
		"storage.max_size":         func(c *config.Config) { c.Storage.MaxSize, c.Storage.MaxSizePercent = 1<<40, 0 },
		"storage.max_blob_size":    func(c *config.Config) { c.Storage.MaxBlobSize = 1 << 30 },
		"storage.max_age":          func(c *config.Config) { c.Storage.MaxAge = 48 * time.Hour },
		"storage.scrub_interval":   func(c *config.Config) { c.Storage.ScrubInterval = time.Hour },
		"storage.scrub_rate":       func(c *config.Config) { c.Storage.ScrubRate = 1 << 20 },
		"storage.local_cache_size": func(c *config.Config) { c.Storage.LocalCacheSize = 1 << 30 },
		"storage.s3.endpoint":      func(c *config.Config) { c.Storage.S3.Endpoint = "http://127.0.0.1:9" },
		"storage.s3.bucket":        func(c *config.Config) { c.Storage.S3.Bucket = "b" },
		"storage.s3.region":        func(c *config.Config) { c.Storage.S3.Region = "r" },
		"storage.s3.prefix":        func(c *config.Config) { c.Storage.S3.Prefix = "p/" },
		"storage.s3.access_key":    func(c *config.Config) { c.Storage.S3.AccessKey = "k" },
		"storage.s3.secret_key":    func(c *config.Config) { c.Storage.S3.SecretKey = "s" },
		"storage.s3.path_style":    func(c *config.Config) { c.Storage.S3.PathStyle = true },
		"storage.s3.redirect":      func(c *config.Config) { c.Storage.S3.Redirect = true },
		"cluster.redis":            func(c *config.Config) { c.Cluster.Redis = "redis://127.0.0.1:9/0" },
		"cluster.advertise":        func(c *config.Config) { c.Cluster.Advertise = "http://127.0.0.1:9" },
		"cluster.secret":           func(c *config.Config) { c.Cluster.Secret = "another-secret-of-some-length" },
		"access.allow":             func(c *config.Config) { c.Access.Allow = net8 },
		"access.trusted_proxies":   func(c *config.Config) { c.Access.TrustedProxies = net8 },
		"access.htpasswd":          func(c *config.Config) { c.Access.Htpasswd = htpasswd },
		"access.private":           func(c *config.Config) { c.Access.Private = config.PrivateAllow },
		"access.users": func(c *config.Config) {
			c.Access.Htpasswd, c.Access.Users = htpasswd, map[string][]string{"alice": {"team/*"}}
		},
		"fleet.expected":     func(c *config.Config) { c.Fleet.Expected = []string{"10.0.0.0/8"} },
		"tls.cert":           func(c *config.Config) { c.TLS.Cert = "/x.crt" },
		"tls.key":            func(c *config.Config) { c.TLS.Key = "/x.key" },
		"log.level":          func(c *config.Config) { c.Log.Level = "debug" },
		"log.format":         func(c *config.Config) { c.Log.Format = "text" },
		"sealed":             func(c *config.Config) { c.Sealed = true },
		"sealed_miss_status": func(c *config.Config) { c.SealedMissStatus = 503 },
		"rules": func(c *config.Config) {
			c.Rules = []rules.Rule{{Match: "docker.io/library/*", Pin: true}}
		},
		"policy": func(c *config.Config) {
			c.Policy = policy.Policy{Mode: policy.Audit, Rules: []policy.Rule{{Match: "docker.io/**", Deny: true}}}
		},
		"policy_file": func(c *config.Config) { c.PolicyFile = filepath.Join(dir, "policy.yaml") },
		"upstreams": func(c *config.Config) {
			c.Upstreams = append(slices.Clone(c.Upstreams), config.Upstream{Name: "ghcr.io", URL: "https://ghcr.io"})
		},
	}
	for _, k := range config.ReloadKeys() {
		fn, ok := change[k.Key]
		if !ok {
			t.Errorf("%s: no case in this test", k.Key)
			continue
		}
		running := m.App.config()
		next := running
		next.Upstreams = slices.Clone(running.Upstreams)
		fn(&next)
		reloaded, restart, err := m.App.Reload(next)
		if err != nil {
			t.Errorf("%s: %v", k.Key, err)
			continue
		}
		named := func(list []string) bool {
			return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, k.Key) })
		}
		switch k.Reload {
		case config.ReloadLive:
			if !named(reloaded) || named(restart) {
				t.Errorf("%s (live): reloaded %q, restart %q", k.Key, reloaded, restart)
			}
		default:
			if named(reloaded) || !named(restart) {
				t.Errorf("%s (%s): reloaded %q, restart %q", k.Key, k.Reload, reloaded, restart)
			}
			if !reflect.DeepEqual(m.App.config(), running) {
				t.Errorf("%s needs a restart, but the configuration in effect changed", k.Key)
			}
		}
	}
	if got := m.App.scrub.Status(); got.Interval != time.Hour || got.Rate != 1<<20 {
		t.Errorf("the scrub runs at %s, %d B/s after the reloads; want 1h, 1 MiB/s", got.Interval, got.Rate)
	}
	if !m.App.upstreams.AllSealed() {
		t.Error("sealed applied, but the upstream client is not sealed")
	}
	if got := m.App.upstreams[0].Client.SealedMissStatus(); got != 503 {
		t.Errorf("sealed_miss_status applied, but the upstream client answers %d", got)
	}
	if got := m.App.ruleSet().Len(); got != 1 {
		t.Errorf("%d rules in effect after the reload, want 1", got)
	}
	if got := m.App.content.Policy().Mode(); got != policy.Audit {
		t.Errorf("the policy in effect after the reload is %q, want audit", got)
	}
	if got := m.App.evictor.MaxAge(); got != 48*time.Hour {
		t.Errorf("storage.max_age applied, but eviction's age limit is %s", got)
	}
	if got := m.App.evictor.MaxSize(); got != 1<<40 {
		t.Errorf("the cap in effect is %d after the reload", got)
	}
}

// TestReloadWithMoreUpstreams: a reloaded file that lists another upstream
// applies its access rules with the running upstreams (no panic on the
// client it lacks) and says the upstreams need a restart.
func TestReloadWithMoreUpstreams(t *testing.T) {
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": "http://127.0.0.1:9"})
	next := m.App.config()
	next.Upstreams = append(slices.Clone(next.Upstreams), config.Upstream{Name: "ghcr.io", URL: "https://ghcr.io"})
	next.Access.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	reloaded, restart, err := m.App.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(restart, "upstreams") || !slices.ContainsFunc(reloaded, func(s string) bool { return strings.HasPrefix(s, "access.allow") }) {
		t.Errorf("reloaded %v, restart %v", reloaded, restart)
	}
}
