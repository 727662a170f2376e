package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// mapEnv returns a lookupEnv over m and the names to scan for typos.
func mapEnv(m map[string]string) (func(string) (string, bool), []string) {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }, names
}

// writeFile writes content to a new file in a temp dir and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// loadWith runs load with yaml (written to a file and passed by --config when
// not ""), the environment env and the command-line args.
func loadWith(t *testing.T, yaml string, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	RegisterFlags(fs)
	if yaml != "" {
		args = append([]string{"--config", writeFile(t, "regcache.yaml", yaml)}, args...)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	lookup, names := mapEnv(env)
	return load(fs, lookup, names)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Addr:             ":5000",
		AdminAddr:        "127.0.0.1:5001",
		Data:             "./data",
		Freshness:        time.Minute,
		NegativeTTL:      30 * time.Second,
		FillTimeout:      30 * time.Minute,
		ShutdownTimeout:  30 * time.Second,
		ProbeInterval:    30 * time.Second,
		SealedMissStatus: 404,
		Prefetch:         Prefetch{Enabled: true, Parallel: 16},
		BudgetReserve:    BudgetReserve{Percent: 10},
		Upstreams:        []Upstream{{Name: "docker.io", URL: "https://registry-1.docker.io"}},
		Access:           Access{Private: "deny"},
		Storage:          Storage{MaxSizePercent: 80, MaxBlobSize: 64 << 30, ScrubInterval: 7 * 24 * time.Hour, ScrubRate: 4 << 20},
		Log:              Log{Level: "info", Format: "json"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}
	// Load with no flag set and no environment behaves the same.
	c2, err := Load(nil, func(string) (string, bool) { return "", false })
	if err != nil || !reflect.DeepEqual(c2, want) {
		t.Errorf("Load(nil, empty) = %+v, %v", c2, err)
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	const file = `
addr: ":6000"
data: /file
freshness: 2m
storage: {max_size: 1GiB}
access: {allow: [10.0.0.0/8], private: allow}
upstreams:
  - url: https://file.example
log: {level: warn}
`
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		args []string
		get  func(Config) any
		want any
	}{
		{"addr default", "", nil, nil, func(c Config) any { return c.Addr }, ":5000"},
		{"addr file", file, nil, nil, func(c Config) any { return c.Addr }, ":6000"},
		{"addr env over file", file, map[string]string{"REGCACHE_ADDR": ":7000"}, nil, func(c Config) any { return c.Addr }, ":7000"},
		{"addr flag over env", file, map[string]string{"REGCACHE_ADDR": ":7000"}, []string{"--addr", ":8000"}, func(c Config) any { return c.Addr }, ":8000"},
		{"addr unset flag ignored", file, map[string]string{"REGCACHE_ADDR": ":7000"}, []string{"--data", "/x"}, func(c Config) any { return c.Addr }, ":7000"},
		{"data file", file, nil, nil, func(c Config) any { return c.Data }, "/file"},
		{"data flag over file", file, nil, []string{"--data=/flag"}, func(c Config) any { return c.Data }, "/flag"},
		{"freshness default", "", nil, nil, func(c Config) any { return c.Freshness }, time.Minute},
		{"freshness file", file, nil, nil, func(c Config) any { return c.Freshness }, 2 * time.Minute},
		{"freshness env", file, map[string]string{"REGCACHE_FRESHNESS": "3m"}, nil, func(c Config) any { return c.Freshness }, 3 * time.Minute},
		{"freshness flag", file, map[string]string{"REGCACHE_FRESHNESS": "3m"}, []string{"--freshness", "4m"}, func(c Config) any { return c.Freshness }, 4 * time.Minute},
		{"max size file", file, nil, nil, func(c Config) any { return c.Storage.MaxSize }, int64(1 << 30)},
		{"max size env", file, map[string]string{"REGCACHE_MAX_SIZE": "500MB"}, nil, func(c Config) any { return c.Storage.MaxSize }, int64(500e6)},
		{"max size flag", file, map[string]string{"REGCACHE_MAX_SIZE": "500MB"}, []string{"--max-size", "2GiB"}, func(c Config) any { return c.Storage.MaxSize }, int64(2 << 30)},
		{"max size plain int", "storage: {max_size: 1073741824}", nil, nil, func(c Config) any { return c.Storage.MaxSize }, int64(1 << 30)},
		{"numeric password in yaml", "upstreams: [{url: https://a.example, username: 1, password: 12345}]", nil, nil, func(c Config) any { return c.Upstreams[0].Password }, "12345"},
		{"private default", "", nil, nil, func(c Config) any { return c.Access.Private }, "deny"},
		{"private file", file, nil, nil, func(c Config) any { return c.Access.Private }, "allow"},
		{"private env", file, map[string]string{"REGCACHE_PRIVATE": "authenticated"}, nil, func(c Config) any { return c.Access.Private }, "authenticated"},
		{"private flag", file, map[string]string{"REGCACHE_PRIVATE": "authenticated"}, []string{"--private", "deny"}, func(c Config) any { return c.Access.Private }, "deny"},
		{"allow file", file, nil, nil, func(c Config) any { return c.Access.Allow }, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
		{"allow env list", file, map[string]string{"REGCACHE_ALLOW": "192.0.2.0/24, 10.1.2.3"}, nil, func(c Config) any { return c.Access.Allow },
			[]netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("10.1.2.3/32")}},
		{"allow flag", file, map[string]string{"REGCACHE_ALLOW": "192.0.2.0/24"}, []string{"--allow", "172.16.0.0/12,fd00::/8"}, func(c Config) any { return c.Access.Allow },
			[]netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("fd00::/8")}},
		{"upstream file", file, nil, nil, func(c Config) any { return c.Upstreams[0] }, Upstream{Name: "file.example", URL: "https://file.example"}},
		{"upstream env", file, map[string]string{"REGCACHE_UPSTREAM_URL": "https://env.example/"}, nil, func(c Config) any { return c.Upstreams[0] }, Upstream{Name: "env.example", URL: "https://env.example"}},
		{"upstream flag", file, map[string]string{"REGCACHE_UPSTREAM_URL": "https://env.example"}, []string{"--upstream-url", "http://localhost:5000", "--upstream-name", "Mirror.Example"},
			func(c Config) any { return c.Upstreams[0] }, Upstream{Name: "mirror.example", URL: "http://localhost:5000"}},
		{"prefetch flag false", "prefetch: {enabled: true, parallel: 2}", nil, []string{"--prefetch=false"}, func(c Config) any { return c.Prefetch }, Prefetch{Enabled: false, Parallel: 2}},
		{"prefetch env", "prefetch: {enabled: false}", map[string]string{"REGCACHE_PREFETCH": "true", "REGCACHE_PREFETCH_PARALLEL": "8"}, nil, func(c Config) any { return c.Prefetch }, Prefetch{Enabled: true, Parallel: 8}},
		{"log level file", file, nil, nil, func(c Config) any { return c.Log }, Log{Level: "warn", Format: "json"}},
		{"log flag", file, map[string]string{"REGCACHE_LOG_FORMAT": "text"}, []string{"--log-level", "DEBUG"}, func(c Config) any { return c.Log }, Log{Level: "debug", Format: "text"}},
		{"admin addr disabled by empty env", "", map[string]string{"REGCACHE_ADMIN_ADDR": ""}, nil, func(c Config) any { return c.AdminAddr }, ""},
		{"admin addr disabled by file", `admin_addr: ""`, nil, nil, func(c Config) any { return c.AdminAddr }, ""},
		{"empty env counts as unset", file, map[string]string{"REGCACHE_ADDR": ""}, nil, func(c Config) any { return c.Addr }, ":6000"},
		{"config from env", "", map[string]string{"REGCACHE_CONFIG": "__FILE__"}, nil, func(c Config) any { return c.Addr }, ":6000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if v, ok := tt.env["REGCACHE_CONFIG"]; ok && v == "__FILE__" {
				tt.env = map[string]string{"REGCACHE_CONFIG": writeFile(t, "c.yaml", file)}
			}
			c, err := loadWith(t, tt.yaml, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfigFlagOverEnv(t *testing.T) {
	t.Parallel()
	envFile := writeFile(t, "env.yaml", `addr: ":1111"`)
	c, err := loadWith(t, `addr: ":2222"`, map[string]string{"REGCACHE_CONFIG": envFile})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":2222" {
		t.Errorf("Addr = %q, want the --config file's :2222", c.Addr)
	}
}

func TestDistributionVariables(t *testing.T) {
	t.Parallel()
	dist := map[string]string{
		"REGISTRY_HTTP_ADDR":                        ":5500",
		"REGISTRY_PROXY_REMOTEURL":                  "https://registry-1.docker.io",
		"REGISTRY_PROXY_USERNAME":                   "me",
		"REGISTRY_PROXY_PASSWORD":                   "token",
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/var/lib/registry",
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range dist {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name     string
		yaml     string
		env      map[string]string
		args     []string
		addr     string
		data     string
		upstream Upstream
	}{
		{name: "alone", env: dist, addr: ":5500", data: "/var/lib/registry",
			upstream: Upstream{Name: "docker.io", URL: "https://registry-1.docker.io", Username: "me", Password: "token"}},
		{name: "other registry named by host", env: with(map[string]string{"REGISTRY_PROXY_REMOTEURL": "https://ghcr.io"}), addr: ":5500", data: "/var/lib/registry",
			upstream: Upstream{Name: "ghcr.io", URL: "https://ghcr.io", Username: "me", Password: "token"}},
		{name: "over file", yaml: "addr: \":6000\"\ndata: /file\n", env: dist, addr: ":5500", data: "/var/lib/registry",
			upstream: Upstream{Name: "docker.io", URL: "https://registry-1.docker.io", Username: "me", Password: "token"}},
		{name: "REGCACHE wins", env: with(map[string]string{"REGCACHE_ADDR": ":7000", "REGCACHE_DATA": "/rc", "REGCACHE_USERNAME": "you",
			"REGCACHE_PASSWORD": "pw", "REGCACHE_UPSTREAM_URL": "https://quay.io"}), addr: ":7000", data: "/rc",
			upstream: Upstream{Name: "quay.io", URL: "https://quay.io", Username: "you", Password: "pw"}},
		{name: "flags win", env: dist, args: []string{"--addr", ":8000", "--data", "/flag", "--username", "flag", "--password", "fpw"}, addr: ":8000", data: "/flag",
			upstream: Upstream{Name: "docker.io", URL: "https://registry-1.docker.io", Username: "flag", Password: "fpw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadWith(t, tt.yaml, tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tt.addr || c.Data != tt.data {
				t.Errorf("addr, data = %q, %q; want %q, %q", c.Addr, c.Data, tt.addr, tt.data)
			}
			if len(c.Upstreams) != 1 || !reflect.DeepEqual(c.Upstreams[0], tt.upstream) {
				t.Errorf("upstreams = %+v, want [%+v]", c.Upstreams, tt.upstream)
			}
		})
	}
}

func TestDesignExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "hub-token")
	htpasswd := filepath.Join(dir, "htpasswd")
	for _, p := range []string{token, htpasswd} {
		if err := os.WriteFile(p, []byte("secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	yaml := `
addr: ":5000"                  # registry API
admin_addr: "127.0.0.1:5001"   # metrics, health, dashboard, admin API
data: ./data
freshness: 1m
fill_timeout: 10m
prefetch: {enabled: false, parallel: 2}
upstreams:                     # first one is the default (root path, no ns)
  - name: docker.io
    url: https://registry-1.docker.io
    username: me
    password_file: ` + token + `
  - name: ghcr.io
    url: https://ghcr.io
    aliases: [GHCR.example]
storage:
  max_size: 200GiB
  max_age: 720h
access:
  allow: [10.0.0.0/8, 192.0.2.0/24]
  trusted_proxies: []
  htpasswd: ` + htpasswd + `
  private: deny                # deny | authenticated | allow
tls:
  cert: /etc/regcache/tls.crt
  key: /etc/regcache/tls.key
log: {level: error, format: text}
`
	c, err := loadWith(t, yaml, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Addr: ":5000", AdminAddr: "127.0.0.1:5001", Data: "./data",
		Freshness: time.Minute, NegativeTTL: 30 * time.Second, FillTimeout: 10 * time.Minute, ShutdownTimeout: 30 * time.Second, ProbeInterval: 30 * time.Second, SealedMissStatus: 404,
		Prefetch:      Prefetch{Enabled: false, Parallel: 2},
		BudgetReserve: BudgetReserve{Percent: 10},
		Upstreams: []Upstream{
			{Name: "docker.io", URL: "https://registry-1.docker.io", Username: "me", PasswordFile: token},
			{Name: "ghcr.io", URL: "https://ghcr.io", Aliases: []string{"ghcr.example"}},
		},
		Storage: Storage{MaxSize: 200 << 30, MaxAge: 720 * time.Hour, MaxBlobSize: 64 << 30, ScrubInterval: 7 * 24 * time.Hour, ScrubRate: 4 << 20},
		Access: Access{
			Allow:    []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")},
			Htpasswd: htpasswd, Private: "deny",
		},
		TLS: TLS{Cert: "/etc/regcache/tls.crt", Key: "/etc/regcache/tls.key"},
		Log: Log{Level: "error", Format: "text"},
	}
	if !strings.HasSuffix(c.File, "regcache.yaml") {
		t.Errorf("File = %q, want the --config file", c.File)
	}
	c.File = ""
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	if pw, err := c.Password(0); err != nil || pw != "secret" {
		t.Errorf("Password(0) = %q, %v; want secret", pw, err)
	}
}

func TestEmptyFile(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"", "# only a comment\n", "---\n"} {
		c, err := loadWith(t, content+"\n", nil)
		if err != nil || c.Addr != ":5000" {
			t.Errorf("%q: Addr %q, err %v", content, c.Addr, err)
		}
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c := Config{Upstreams: []Upstream{
		{Password: "plain"},
		{PasswordFile: file("lf", "fromfile\n")},
		{PasswordFile: file("crlf", "crlf\r\n")},
		{PasswordFile: file("none", "  spaced  ")},
		{PasswordFile: filepath.Join(dir, "missing")},
	}}
	tests := []struct {
		name    string
		i       int
		want    string
		wantErr string
	}{
		{"plain", 0, "plain", ""},
		{"file trims newline", 1, "fromfile", ""},
		{"file trims CRLF", 2, "crlf", ""},
		{"file keeps spaces", 3, "  spaced  ", ""},
		{"missing file", 4, "", "config: upstreams[4].password_file: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"out of range", 5, "", "config: no upstream 5 (have 5)"},
		{"negative", -1, "", "config: no upstream -1 (have 5)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := c.Password(tt.i)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Password(%d) = %q, %v; want %q", tt.i, got, err, tt.want)
			}
		})
	}
}

func TestPasswordFileFromEnvAndFlag(t *testing.T) {
	t.Parallel()
	token := writeFile(t, "token", "tok\n")
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"env", map[string]string{"REGCACHE_USERNAME": "me", "REGCACHE_PASSWORD_FILE": token}, nil},
		{"flag", nil, []string{"--username", "me", "--password-file", token}},
		{"flag file over env password", map[string]string{"REGISTRY_PROXY_USERNAME": "me", "REGISTRY_PROXY_PASSWORD": "old"}, []string{"--password-file", token}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadWith(t, "", tt.env, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			if u := c.Upstreams[0]; u.Password != "" || u.PasswordFile != token {
				t.Errorf("upstream = %+v", u)
			}
			if pw, err := c.Password(0); err != nil || pw != "tok" {
				t.Errorf("Password(0) = %q, %v", pw, err)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	c := defaultConfig()
	c.Upstreams = []Upstream{
		{Name: "a", URL: "https://a", Username: "u", Password: "hunter2"},
		{Name: "b", URL: "https://b", Username: "u", PasswordFile: "/run/secrets/b"},
		{Name: "c", URL: "https://c"},
	}
	r := c.Redacted()
	if got := r.Upstreams[0].Password; got != "<redacted>" {
		t.Errorf("redacted password = %q", got)
	}
	if got := r.Upstreams[1]; got.Password != "" || got.PasswordFile != "/run/secrets/b" {
		t.Errorf("password_file upstream = %+v, want path kept and no password", got)
	}
	if got := r.Upstreams[2].Password; got != "" {
		t.Errorf("anonymous upstream password = %q, want empty", got)
	}
	if c.Upstreams[0].Password != "hunter2" {
		t.Error("Redacted modified the original")
	}
	if s := strings.Join([]string{r.Upstreams[0].Password, r.Upstreams[0].Username}, " "); strings.Contains(s, "hunter2") {
		t.Error("password leaked")
	}
}

// TestLoadProcessEnv checks Load's real wiring: os.Environ for typo detection
// filtered by lookupEnv. It uses t.Setenv, so it cannot run in parallel.
func TestLoadProcessEnv(t *testing.T) {
	t.Setenv("REGCACHE_ADDR", ":9999")
	c, err := Load(nil, os.LookupEnv)
	if err != nil || c.Addr != ":9999" {
		t.Fatalf("Load = %q, %v", c.Addr, err)
	}
	t.Setenv("REGCACHE_ADRR", ":1")
	if _, err := Load(nil, os.LookupEnv); err == nil || !strings.Contains(err.Error(), "unknown environment variable REGCACHE_ADRR") {
		t.Errorf("typo: err = %v", err)
	}
	// A test's map lookup ignores the process's stray variable.
	if _, err := Load(nil, func(string) (string, bool) { return "", false }); err != nil {
		t.Errorf("map lookup: %v", err)
	}
}
