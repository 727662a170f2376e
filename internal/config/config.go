// Package config turns regcache's YAML file, REGCACHE_* environment variables
// (plus the Distribution registry's REGISTRY_* variables, for drop-in use) and
// command-line flags into one validated Config.
//
// Every option is declared once, in the option table (options.go), which gives
// its flag, its environment variable(s), its YAML key, its default and its
// parser, so the three sources cannot drift apart and every error names the
// key, variable or flag that was wrong. Precedence, lowest first:
// defaults < YAML file < environment < flags that were set on the command line.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/regcache/regcache/internal/policy"
	"github.com/regcache/regcache/internal/redact"
	"github.com/regcache/regcache/internal/rules"
)

// Config is regcache's whole configuration, as read by Load. main splits it
// into the small per-package configs.
type Config struct {
	// Addr is the listen address of the registry API (yaml addr, default ":5000").
	Addr string
	// AdminAddr is the listen address of metrics, health, dashboard and admin
	// API (yaml admin_addr, default "127.0.0.1:5001"); "" disables it.
	AdminAddr string
	// AdminToken, when set, is the bearer token the admin listener asks of
	// state-changing calls from other hosts and of views that name private
	// repositories (yaml admin_token); unset, state-changing calls are taken
	// from loopback only.
	AdminToken string
	// Data is the directory of the blob store and index (yaml data, default "./data").
	Data string
	// Freshness is how long a fetched tag is served without asking upstream
	// (yaml freshness, default 1m).
	Freshness time.Duration
	// FillTimeout bounds one upstream blob fetch once every client has left
	// (yaml fill_timeout, default 30m).
	FillTimeout time.Duration
	// ShutdownTimeout bounds the drain on SIGTERM or SIGINT: responses in
	// flight, and the fills they stream, get this long to finish (yaml
	// shutdown_timeout, default 30s).
	ShutdownTimeout time.Duration
	// NegativeTTL is how long an upstream's "not found" for a tag is
	// answered from memory without asking again (yaml negative_ttl,
	// default 30s; 0 asks every time).
	NegativeTTL time.Duration
	// ProbeInterval is how often an idle upstream is probed with a /v2/
	// ping, first at start (yaml probe_interval, default 30s; 0 is off).
	ProbeInterval time.Duration
	// Sealed seals every upstream, as upstreams[].sealed does one (yaml
	// sealed, default false; applied live on SIGHUP).
	Sealed bool
	// SealedMissStatus is the status of a miss on a sealed upstream: 404
	// (the spec's *_UNKNOWN, a client gives up at once) or 503
	// (UNAVAILABLE, a client may retry) (yaml sealed_miss_status, default
	// 404; applied live on SIGHUP).
	SealedMissStatus int
	// Prefetch controls background fetching of an image's blobs once its
	// manifest was pulled (yaml prefetch).
	Prefetch Prefetch
	// BudgetReserve is how many counted pulls (manifest GETs) of an
	// upstream's rate limit prefetch and `regcache warm` leave to other
	// clients (yaml budget_reserve, default 10% of the last ratelimit-limit).
	BudgetReserve BudgetReserve
	// Upstreams are the registries mirrored; the first one is the default,
	// served at the root path (yaml upstreams, default Docker Hub).
	Upstreams []Upstream
	// Storage bounds the cache (yaml storage).
	Storage Storage
	// Cluster joins replicas sharing S3 and Redis (yaml cluster).
	Cluster Cluster
	// Access says who may pull (yaml access).
	Access Access
	// Fleet is about the nodes the mirror serves (yaml fleet).
	Fleet Fleet
	// TLS, when both files are set, makes the registry API serve HTTPS (yaml tls).
	TLS TLS
	// Log selects log level and format (yaml log).
	Log Log
	// Rules are per upstream/repository/tag settings, first match wins
	// (yaml rules; see internal/rules and docs/operations.md).
	Rules []rules.Rule
	// Policy is the pull-time supply-chain policy (yaml policy, or the
	// file PolicyFile names; see internal/policy and docs/policy.md).
	Policy policy.Policy
	// PolicyFile is a file holding the policy (yaml policy_file); it is
	// read again on each SIGHUP.
	PolicyFile string

	// File is the configuration file Load read: the one --config or
	// REGCACHE_CONFIG names, or the one REGCACHE_CONFIG_SEARCH found; "" for
	// none. It is not an option.
	File string
	// Warnings are what Load found worth telling but not refusing (keys of
	// a Distribution config.yml and REGISTRY_* variables regcache does not
	// use), one sentence each; serve logs them at start-up.
	Warnings []string
}

// Prefetch controls background fetching of the blobs of a pulled manifest.
type Prefetch struct {
	// Enabled turns prefetching on (yaml prefetch.enabled, default true).
	Enabled bool
	// Parallel is the number of concurrent prefetch fetches, at least 1
	// (yaml prefetch.parallel, default 16).
	Parallel int
}

// BudgetReserve is a count of pulls, or (Count 0) a percentage of the
// upstream's last reported ratelimit-limit.
type BudgetReserve struct {
	Count   int
	Percent float64
}

// Upstream is one mirrored registry.
type Upstream struct {
	// Name is the registry host clients know, e.g. "docker.io" or "ghcr.io".
	// It defaults to the host of URL, with registry-1.docker.io mapped to docker.io.
	Name string
	// URL is the registry's base URL: http or https scheme, host, no path.
	URL string
	// Username for basic auth or the token endpoint; "" is anonymous.
	Username string
	// Password goes with Username. Use Config.Password to read it, since it may
	// live in PasswordFile instead.
	Password string
	// PasswordFile is a file holding the password (a trailing newline is
	// ignored); it is read at each Config.Password call, so it may be rotated.
	PasswordFile string
	// Aliases are extra Host names that route to this upstream.
	Aliases []string
	// Fallback names other upstreams of the list, tried in order, under the
	// same repository name, when this one is down, answers 5xx or is rate
	// limited for a counted request (yaml upstreams[].fallback). Content
	// by digest is taken from any of them (the digest is checked).
	Fallback []string
	// TrustedTags lets this upstream's answer for a tag stand in for the
	// upstream it is a fallback of (yaml upstreams[].trusted_tags): a
	// public mirror of Docker Hub is, an arbitrary registry is not.
	TrustedTags bool
	// CredentialHelper names a Docker credential helper (yaml
	// upstreams[].credential_helper: ecr-login runs
	// docker-credential-ecr-login get); CredentialCommand is any other
	// program printing the same JSON. Either replaces Username/Password.
	CredentialHelper  string
	CredentialCommand []string
	// CredentialTTL is how long the program's answer is used before it
	// runs again; 0 keeps it until the upstream refuses it.
	CredentialTTL time.Duration
	// MaxBandwidth caps the bytes per second read from this upstream by
	// all its fills together (yaml upstreams[].max_bandwidth); 0 is
	// unlimited.
	MaxBandwidth int64
	// MaxConnections bounds the connections open to each host of this
	// upstream (yaml upstreams[].max_connections); requests beyond it
	// wait their turn. 0 is unlimited.
	MaxConnections int
	// FillConnections is how many connections one fill of a large blob
	// may use (yaml upstreams[].fill_connections), bounded by
	// MaxConnections; 0 is defaults.FillConnections, 1 one stream.
	FillConnections int
	// Sealed upstreams are never contacted (yaml upstreams[].sealed): no
	// request, no token, no probe; what is cached is served, a miss is
	// answered 404 naming the seal, and misses are listed in /status.
	// Applied live on SIGHUP.
	Sealed bool
}

// Credentialed reports whether the mirror reads the upstream with
// credentials of its own (a password or a credential program), so it may
// see repositories an anonymous client may not.
func (u Upstream) Credentialed() bool {
	return u.Username != "" || u.Password != "" || u.PasswordFile != "" || u.CredentialHelper != "" || len(u.CredentialCommand) > 0
}

// Storage bounds the cache.
type Storage struct {
	// MaxSize is the cache size limit in bytes; 0 means unlimited. In YAML,
	// environment and flags it accepts "200GiB", "500MB", a byte count, or
	// a percentage ("80%"), which sets MaxSizePercent instead.
	MaxSize int64
	// MaxSizePercent is the limit as a share of the data directory's file
	// system (0 < p <= 100), turned into MaxSize when the mirror starts.
	MaxSizePercent float64
	// MaxAge evicts blobs not accessed for this long; 0 turns it off.
	MaxAge time.Duration
	// MaxBlobSize bounds a blob whose size neither a manifest nor the
	// upstream's headers give: a longer body fails its fill.
	MaxBlobSize int64
	// ScrubInterval is how long the background scrub takes to re-hash the
	// whole store once (default a week); 0 turns the scrub off.
	ScrubInterval time.Duration
	// ScrubRate is the most bytes per second the scrub reads (default
	// 4 MiB/s), whatever ScrubInterval asks.
	ScrubRate int64
	// S3 is the shared object store of a cluster's content; Bucket ""
	// keeps content on local disk under Data.
	S3 S3
	// LocalCacheSize bounds the local disk tier in front of S3 (bytes);
	// 0 keeps no committed blob locally.
	LocalCacheSize int64
}

// S3 is an S3-compatible bucket (yaml storage.s3). AccessKey and SecretKey
// empty: the AWS_* environment variables are used.
type S3 struct {
	Endpoint  string
	Bucket    string
	Region    string
	Prefix    string
	AccessKey string
	SecretKey string
	PathStyle bool
	// Redirect answers blob hits with a short-lived presigned URL of the
	// object instead of streaming it.
	Redirect bool
}

// Cluster makes replicas share one upstream fetch per digest (yaml
// cluster). Redis "" is a single node.
type Cluster struct {
	// Redis is redis://[:password@]host:port/db (rediss:// for TLS): the
	// shared index, membership and leases.
	Redis string
	// Advertise is the URL other replicas reach this one's registry
	// listener at (http://10.0.0.5:5000).
	Advertise string
	// Secret authenticates replicas to one another's internal endpoint.
	Secret string
}

// Access says who may pull what.
type Access struct {
	// Allow lists the client networks allowed; empty allows every client.
	Allow []netip.Prefix
	// TrustedProxies lists the proxies whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Htpasswd is a bcrypt htpasswd file of client logins; "" means no logins.
	Htpasswd string
	// Private is the policy for private upstream repositories: one of
	// "deny" (default), "authenticated" or "allow".
	Private string
	// Users optionally limits, per htpasswd user, the private repositories
	// the user may pull to a list of patterns such as "myorg/*" (yaml
	// access.users, a mapping of user to list; YAML only). A user not listed
	// may pull every repository the private policy allows logged-in users.
	Users map[string][]string
}

// TLS names the certificate and key of the registry API; both or neither.
type TLS struct {
	Cert, Key string
}

// Log selects the log output.
type Log struct {
	// Level is one of debug, info (default), warn, error.
	Level string
	// Format is json (default) or text.
	Format string
}

// Private access policies.
const (
	PrivateDeny          = "deny"
	PrivateAuthenticated = "authenticated"
	PrivateAllow         = "allow"
)

// defaultConfig returns the configuration used when nothing is set: each
// option's default in the option table, parsed by its own setter. The default
// upstream's Name is left empty so it follows the URL if only the URL is
// overridden; Load fills it in.
func defaultConfig() Config {
	var c Config
	for _, o := range options {
		if o.def != "" && o.set != nil {
			if err := o.set(&c, o.def); err != nil {
				panic("config: the default of --" + o.flag + " does not parse: " + err.Error())
			}
		}
	}
	return c
}

// Load builds the Config: defaults < the REGCACHE_DEFAULTS file (the
// container image's defaults) < config file (path from the --config flag or
// REGCACHE_CONFIG, else the first of REGCACHE_CONFIG_SEARCH that exists; in
// regcache's YAML or, with a top-level "version: 0.1", Distribution's
// config.yml) < environment (REGCACHE_* over their REGISTRY_* aliases) <
// flags that were set (fs.Changed). fs may be nil, and should otherwise
// hold the flags added by RegisterFlags.
//
// lookupEnv is os.LookupEnv in production, a map in tests. Variables named
// REGCACHE_* that match no option are an error; they are found by listing
// os.Environ and keeping the names lookupEnv also reports, so a test's map
// is never mixed with the real environment.
//
// Load returns an error naming the key, variable or flag for any unknown key
// or bad value, and calls Validate on the result.
func Load(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) (Config, error) {
	var names []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	return load(fs, lookupEnv, names)
}

// load is Load with the list of environment variable names passed in, so
// tests can check the unknown-variable error without touching the process.
func load(fs *pflag.FlagSet, lookupEnv func(string) (string, bool), envNames []string) (Config, error) {
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	if err := checkUnknownEnv(envNames, lookupEnv); err != nil {
		return Config{}, err
	}
	c := defaultConfig()
	if err := applyDefaults(&c, lookupEnv); err != nil {
		return Config{}, err
	}
	var unusedKeys []string
	path := configPath(fs, lookupEnv)
	if path == "" {
		path = searchConfig(lookupEnv)
	}
	if path != "" {
		u, err := applyConfigFile(&c, path)
		if err != nil {
			return Config{}, err
		}
		c.File, unusedKeys = path, u
	}
	if err := applyEnv(&c, lookupEnv); err != nil {
		return Config{}, err
	}
	if err := applyFlags(&c, fs); err != nil {
		return Config{}, err
	}
	c.fillNames()
	if err := c.loadPolicy(); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	unusedEnv := unusedRegistryEnv(envNames, lookupEnv)
	if err := refuseUnrecognised(c, path, unusedKeys, unusedEnv); err != nil {
		return Config{}, err
	}
	c.Warnings = append(unusedKeysWarning(path, unusedKeys), unusedEnvWarning(unusedEnv)...)
	return c, nil
}

// configPath returns the YAML file to read: --config if set, else
// REGCACHE_CONFIG, else "" for none.
func configPath(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) string {
	if fs != nil && fs.Changed(flagConfig) {
		if f := fs.Lookup(flagConfig); f != nil {
			return f.Value.String()
		}
	}
	v, _ := lookupEnv(envName(flagConfig))
	return v
}

// fillNames gives each upstream without a Name the host of its URL.
func (c *Config) fillNames() {
	for i := range c.Upstreams {
		if c.Upstreams[i].Name == "" {
			c.Upstreams[i].Name = defaultName(c.Upstreams[i].URL)
		}
	}
}

// Password returns the password of upstream i: the contents of its
// PasswordFile without trailing newlines if that is set, else its Password.
// It fails if i is out of range or the file cannot be read.
func (c Config) Password(i int) (string, error) {
	if i < 0 || i >= len(c.Upstreams) {
		return "", fmt.Errorf("config: no upstream %d (have %d)", i, len(c.Upstreams))
	}
	u := c.Upstreams[i]
	if u.PasswordFile == "" {
		return u.Password, nil
	}
	b, err := os.ReadFile(u.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("config: upstreams[%d].password_file: %w", i, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// redacted replaces a set password in Redacted output.
const redacted = "<redacted>"

// Redacted returns a copy of c that is safe to log: every secret option
// (SecretKeys: upstream passwords, the admin token, the S3 secret key, the
// cluster secret) is replaced with "<redacted>", and cluster.redis loses
// its password. Password file paths are kept. c is not modified.
// TestRedactedCoversEverySecretOption holds it to the option table.
func (c Config) Redacted() Config {
	c.Upstreams = slices.Clone(c.Upstreams)
	v := reflect.ValueOf(&c).Elem()
	for _, key := range SecretKeys() {
		if key == upstreamPasswordKey {
			for i := range c.Upstreams {
				if c.Upstreams[i].Password != "" {
					c.Upstreams[i].Password = redacted
				}
			}
			continue
		}
		f := fieldsOf(v, key)[0]
		switch {
		case f.String() == "":
		case secrecyOf(key) == secretInURL:
			f.SetString(redact.URL(f.String()))
		default:
			f.SetString(redacted)
		}
	}
	return c
}

// Fleet is the fleet table's configuration.
type Fleet struct {
	// Expected lists the nodes expected to pull through the mirror:
	// networks (CIDR), addresses, and files of addresses or networks, one
	// a line (yaml fleet.expected). /status lists the expected addresses
	// never seen. Files are read at start and on each SIGHUP.
	Expected []string
}
