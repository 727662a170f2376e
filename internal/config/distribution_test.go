package config

import (
	"github.com/regcache/regcache/internal/defaults"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// registryDocsConfig is a pull-through cache's config.yml as the registry
// image's documentation shows it (its default file plus the proxy
// section), with the paths given by the test.
const registryDocsConfig = `version: 0.1
log:
  fields:
    service: registry
  level: debug
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: %[1]s
http:
  addr: :5500
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: %[2]s
    key: %[3]s
auth:
  htpasswd:
    realm: basic-realm
    path: %[4]s
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  remoteurl: https://registry-1.docker.io
  username: me
  password: token
  ttl: 168h
`

// distributionFixture writes the files registryDocsConfig names and
// returns the config's text and the equivalent REGISTRY_* variables.
func distributionFixture(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("u:$2y$05$abcdefghijklmnopqrstuu5ySmfa1oG3dPqx0Dkl8uwYQDQ7Wm0lO\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, cert, key := filepath.Join(dir, "data"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	env := map[string]string{
		"REGISTRY_LOG_LEVEL":                        "debug",
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": data,
		"REGISTRY_HTTP_ADDR":                        ":5500",
		"REGISTRY_HTTP_TLS_CERTIFICATE":             cert,
		"REGISTRY_HTTP_TLS_KEY":                     key,
		"REGISTRY_AUTH_HTPASSWD_PATH":               htpasswd,
		"REGISTRY_PROXY_REMOTEURL":                  "https://registry-1.docker.io",
		"REGISTRY_PROXY_USERNAME":                   "me",
		"REGISTRY_PROXY_PASSWORD":                   "token",
		"REGISTRY_PROXY_TTL":                        "168h",
	}
	return sprintf(registryDocsConfig, data, cert, key, htpasswd), env
}

func sprintf(format string, args ...any) string {
	return strings.NewReplacer("%[1]s", args[0].(string), "%[2]s", args[1].(string), "%[3]s", args[2].(string), "%[4]s", args[3].(string)).Replace(format)
}

// withoutSource clears what says where a Config came from.
func withoutSource(c Config) Config {
	c.File, c.Warnings = "", nil
	return c
}

// TestDistributionFileAsVariables: the registry image's config.yml, given
// with --config or found at either of Distribution's paths by
// REGCACHE_CONFIG_SEARCH, gives the Config its REGISTRY_* variables give,
// and names the keys regcache does not use in one warning.
func TestDistributionFileAsVariables(t *testing.T) {
	t.Parallel()
	yml, env := distributionFixture(t)
	fromEnv, err := loadWith(t, "", env)
	if err != nil {
		t.Fatal(err)
	}
	want := Upstream{Name: "docker.io", URL: "https://registry-1.docker.io", Username: "me", Password: "token"}
	if fromEnv.Addr != ":5500" || fromEnv.Storage.MaxAge != 168*time.Hour || fromEnv.Log.Level != "debug" ||
		fromEnv.TLS.Cert == "" || fromEnv.Access.Htpasswd == "" || !reflect.DeepEqual(fromEnv.Upstreams, []Upstream{want}) {
		t.Fatalf("from the variables: %+v", fromEnv)
	}
	if len(fromEnv.Warnings) != 0 {
		t.Errorf("the mapped variables warned: %q", fromEnv.Warnings)
	}

	dir := t.TempDir()
	v3, v2 := filepath.Join(dir, "distribution", "config.yml"), filepath.Join(dir, "docker", "registry", "config.yml")
	search := map[string]string{envConfigSearch: v3 + ":" + v2}
	write := func(p string) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string, c Config, err error, file string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(withoutSource(c), withoutSource(fromEnv)) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, c, fromEnv)
		}
		if c.File != file {
			t.Errorf("%s: File = %q, want %q", name, c.File, file)
		}
		if len(c.Warnings) != 1 {
			t.Fatalf("%s: warnings %q, want one", name, c.Warnings)
		}
		for _, k := range []string{"log.fields", "storage.cache", "http.headers", "auth.htpasswd.realm", "health"} {
			if !strings.Contains(c.Warnings[0], k) {
				t.Errorf("%s: the warning does not name %s: %s", name, k, c.Warnings[0])
			}
		}
		_, list, _ := strings.Cut(c.Warnings[0], "does not use: ")
		for _, k := range []string{"proxy", "rootdirectory", "http.addr", "version"} {
			if strings.Contains(list, k) {
				t.Errorf("%s: the warning names %s, which is used: %s", name, k, c.Warnings[0])
			}
		}
	}

	c, err := loadWith(t, yml, nil)
	check("--config", c, err, c.File)
	c, err = loadWith(t, "", search) // neither exists yet
	if err != nil || c.File != "" || c.Addr != ":5000" {
		t.Fatalf("search with no file: %+v, %v", c, err)
	}
	write(v2)
	c, err = loadWith(t, "", search)
	check("v2 path", c, err, v2)
	write(v3)
	if err := os.WriteFile(v2, []byte("version: 0.1\nhttp: {addr: \":9999\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = loadWith(t, "", search)
	check("v3 path first", c, err, v3)
	c, err = loadWith(t, "addr: \":7777\"\n", search)
	if err != nil || c.Addr != ":7777" {
		t.Errorf("--config beats the search: addr %q, %v", c.Addr, err)
	}
}

// TestDistributionPrecedence: defaults < REGCACHE_DEFAULTS file < config
// file < REGISTRY_* < REGCACHE_* < flags, with the Distribution file in the
// config file's place; an image's REGCACHE_DEFAULTS never beats what the
// user passes.
func TestDistributionPrecedence(t *testing.T) {
	t.Parallel()
	defaultsFile := writeFile(t, "defaults.yaml", "data: /var/lib/registry\nadmin_addr: \":5001\"\n")
	dist := "version: 0.1\nstorage: {filesystem: {rootdirectory: /dist}}\nhttp: {addr: \":6000\"}\n"
	img := map[string]string{envDefaults: defaultsFile}
	with := func(m map[string]string) map[string]string {
		out := map[string]string{envDefaults: defaultsFile}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	tests := []struct {
		name, yaml  string
		env         map[string]string
		args        []string
		data, admin string
	}{
		{"built-in", "", nil, nil, "./data", "127.0.0.1:5001"},
		{"image defaults", "", img, nil, "/var/lib/registry", ":5001"},
		{"distribution env over image", "", with(map[string]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/mine"}), nil, "/mine", ":5001"},
		{"distribution file over image", dist, img, nil, "/dist", ":5001"},
		{"regcache file over image", "data: /rc\n", img, nil, "/rc", ":5001"},
		{"distribution env over file", dist, with(map[string]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/env"}), nil, "/env", ":5001"},
		{"REGCACHE over REGISTRY", dist, with(map[string]string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/env", "REGCACHE_DATA": "/rce", "REGCACHE_ADMIN_ADDR": ""}), nil, "/rce", ""},
		{"flags over all", dist, with(map[string]string{"REGCACHE_DATA": "/rce"}), []string{"--data", "/flag", "--admin-addr", "127.0.0.1:6001"}, "/flag", "127.0.0.1:6001"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadWith(t, tt.yaml, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if c.Data != tt.data || c.AdminAddr != tt.admin {
				t.Errorf("data, admin_addr = %q, %q; want %q, %q", c.Data, c.AdminAddr, tt.data, tt.admin)
			}
		})
	}
	if _, err := loadWith(t, "", map[string]string{envDefaults: writeFile(t, "bad.yaml", "dta: /x\n")}); err == nil || !strings.Contains(err.Error(), envDefaults) {
		t.Errorf("a bad defaults file: %v, want an error naming %s", err, envDefaults)
	}
}

// TestUnusedRegistryVariables: REGISTRY_* variables no option reads are
// named in one warning; the mapped ones and other variables are not.
func TestUnusedRegistryVariables(t *testing.T) {
	t.Parallel()
	c, err := loadWith(t, "", map[string]string{
		"REGISTRY_PROXY_REMOTEURL":         "https://registry-1.docker.io",
		"REGISTRY_PROXY_TTL":               "72h",
		"REGISTRY_STORAGE_DELETE_ENABLED":  "true",
		"REGISTRY_HTTP_SECRET":             "s3cr3t",
		"REGISTRY_AUTH_HTPASSWD_REALM":     "basic-realm",
		"REGISTRYISH":                      "x",
		"REGCACHE_LOG_LEVEL":               "info",
		"REGISTRY_NOTIFICATIONS_ENDPOINTS": "",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.MaxAge != 72*time.Hour {
		t.Errorf("REGISTRY_PROXY_TTL: max_age %v, want 72h", c.Storage.MaxAge)
	}
	if len(c.Warnings) != 1 {
		t.Fatalf("warnings %q, want one", c.Warnings)
	}
	w := c.Warnings[0]
	for _, n := range []string{"REGISTRY_AUTH_HTPASSWD_REALM, REGISTRY_HTTP_SECRET, REGISTRY_NOTIFICATIONS_ENDPOINTS, REGISTRY_STORAGE_DELETE_ENABLED (it reads"} {
		if !strings.Contains(w, n) {
			t.Errorf("warning %q does not list %q", w, n)
		}
	}
	if strings.Contains(w, "s3cr3t") || strings.Contains(w, "REGISTRYISH") || strings.Contains(w, "REGISTRY_PROXY_TTL, REGISTRY_S") {
		t.Errorf("warning %q names a value, a non-REGISTRY_ variable or a mapped one", w)
	}
	if c, err := loadWith(t, "", map[string]string{"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io"}); err != nil || len(c.Warnings) != 0 {
		t.Errorf("only mapped variables: %q, %v", c.Warnings, err)
	}
}

// TestDistributionFileErrors: a wrong version or value is an error naming
// the file and the key; keys Distribution has twice for one option too.
func TestDistributionFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ yaml, want string }{
		{"version: 0.2\n", `version "0.2": regcache reads Distribution's configuration version 0.1`},
		{"version: 0.1\nproxy: {ttl: 7d}\n", `proxy.ttl: invalid duration "7d"`},
		{"version: 0.1\nproxy: {remoteurl: registry-1.docker.io}\n", `proxy.remoteurl: invalid URL`},
		{"version: 0.1\nhttp: {addr: [a, b]}\n", `http.addr: want a single value, got a list`},
		{"version: 0.1\nloglevel: info\nlog: {level: debug}\n", `log.level: sets the same option as another key`},
		{"version: 0.1\nlog: {level: loud}\n", `log.level: invalid log level "loud"`},
	}
	for _, tt := range tests {
		_, err := loadWith(t, tt.yaml, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "regcache.yaml") {
			t.Errorf("%q: error %v, want one naming the file and %q", tt.yaml, err, tt.want)
		}
	}
	// Distribution's level names, null values as absent, the deprecated loglevel.
	c, err := loadWith(t, "version: \"0.1\"\nlog: {level: warning}\nproxy: {remoteurl: null, ttl: }\n", nil)
	if err != nil || c.Log.Level != "warn" || c.Upstreams[0].URL != defaults.UpstreamURL || len(c.Warnings) != 0 {
		t.Errorf("warning level and nulls: %+v, %v", c, err)
	}
	if c, err := loadWith(t, "version: 0.1\nloglevel: trace\nstorage: {s3: {bucket: b}}\n", nil); err != nil || c.Log.Level != "debug" ||
		len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "storage.s3") {
		t.Errorf("deprecated loglevel and an s3 driver: %+v, %v", c, err)
	}
}

// TestDistributionDocTable: docs/configuration-distribution.md's table has
// a row for every mapped key, naming its variable and its option's flag.
func TestDistributionDocTable(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration-distribution.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // first cell → row
	for line := range strings.Lines(string(doc)) {
		if cells := strings.Split(line, "|"); len(cells) > 4 && strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			rows[strings.Trim(strings.Fields(cells[1])[0], "`")] = line
		}
	}
	for key, flag := range distributionKeys {
		if key == "loglevel" {
			key = "log.level" // its row names both
		}
		row, ok := rows[key]
		if !ok {
			t.Errorf("no row for %s", key)
			continue
		}
		o := optionByFlag(flag)
		if !strings.Contains(row, "`--"+flag+"`") {
			t.Errorf("the row of %s does not name --%s: %s", key, flag, row)
		}
		alias := registryEnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		if !slices.Contains(o.aliases, alias) {
			t.Errorf("%s: --%s has no alias %s, the variable Distribution reads for it", key, flag, alias)
		}
		if !strings.Contains(row, "`"+alias+"`") {
			t.Errorf("the row of %s does not name %s: %s", key, alias, row)
		}
	}
	if !strings.Contains(rows["log.level"], "`loglevel`") {
		t.Error("the log.level row does not name the old top-level loglevel")
	}
}
