package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/regcache/regcache/internal/defaults"
	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/redact"
)

// kind is how an option's value is written on the command line.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindDuration
	kindList // comma-separated on the command line and in the environment, a sequence in YAML
)

// option declares one setting once for all three sources. Its environment
// variable is envName(flag); aliases are read only when that one is unset.
type option struct {
	flag    string   // kebab-case flag name
	key     string   // YAML key path; "" when the option is not a top-level YAML key
	aliases []string // Distribution variables, of lower precedence than envName(flag)
	kind    kind
	def     string // flag default, shown by --help as "(default ...)"
	defDoc  string // shown as "(default defDoc)" when def is the zero value
	usage   string
	// emptyEnv makes an empty environment variable set the option (to "");
	// otherwise an empty variable counts as unset.
	emptyEnv bool
	// set parses v and stores it in c; its error does not name the source.
	set func(c *Config, v string) error
	// reload is what a SIGHUP does with a changed value (reload.go).
	reload Reload

	// secret marks a credential: every output redacts it (SecretKeys,
	// Redacted, Explain).
	secret secrecy
}

// secrecy says whether, and how, an option's value is a secret.
type secrecy int

const (
	notSecret   secrecy = iota
	secretValue         // the whole value: shown as <redacted>
	secretInURL         // a URL's password: shown without it (redact.URL)
)

// SecretKeys lists the options whose values are secrets, by YAML key
// (upstreams[].password for every upstream's password), from the option
// table: config print, Explain, Redacted (logs, /status, errors) redact
// each of them.
func SecretKeys() []string {
	var out []string
	for _, o := range options {
		switch {
		case o.secret == notSecret:
		case o.key != "":
			out = append(out, o.key)
		case isFirstUpstreamOption(o.flag):
			out = append(out, upstreamKey(o.flag))
		}
	}
	return out
}

// upstreamPasswordKey is the secret key of every upstream's password.
const upstreamPasswordKey = "upstreams[].password"

// upstreamKey is the key, for every upstream, of a default-upstream flag.
func upstreamKey(flag string) string { return strings.Replace(firstUpstreamKeys[flag], "[0]", "[]", 1) }

// secrecyOf is how the option with YAML key key is secret.
func secrecyOf(key string) secrecy {
	for _, o := range options {
		if o.key == key || (o.key == "" && isFirstUpstreamOption(o.flag) && upstreamKey(o.flag) == key) {
			return o.secret
		}
	}
	return notSecret
}

// flagConfig is the flag naming the YAML file; it is not a Config field.
const flagConfig = "config"

// options is every setting, in --help order.
var options = []option{
	{flag: flagConfig, reload: ReloadCommandLine, usage: "YAML configuration file", defDoc: "none"},
	{flag: "addr", reload: ReloadRestart, key: "addr", aliases: []string{"REGISTRY_HTTP_ADDR"}, def: defaults.Addr,
		usage: "listen address of the registry API",
		set:   setString(func(c *Config) *string { return &c.Addr }, checkAddr)},
	{flag: "admin-addr", reload: ReloadRestart, key: "admin_addr", def: defaults.AdminAddr, emptyEnv: true,
		usage: `listen address of metrics, health, dashboard and admin API; "" disables it`,
		set:   setString(func(c *Config) *string { return &c.AdminAddr }, checkAdminAddr)},
	{flag: "admin-token", reload: ReloadLive, key: "admin_token", defDoc: "none: state-changing admin calls from loopback only",
		usage:  "bearer token of the admin API for state-changing calls and private views; prefer the environment or the file",
		set:    setString(func(c *Config) *string { return &c.AdminToken }, nil),
		secret: secretValue},
	{flag: "data", reload: ReloadRestart, key: "data", aliases: []string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY"}, def: defaults.Data,
		usage: "directory of the cached content and index",
		set:   setString(func(c *Config) *string { return &c.Data }, checkNonEmpty)},
	{flag: "freshness", reload: ReloadRestart, key: "freshness", kind: kindDuration, def: duration(defaults.Freshness),
		usage: "a tag fetched less than this long ago is served without asking upstream",
		set:   setDuration(func(c *Config) *time.Duration { return &c.Freshness }, false)},
	{flag: "fill-timeout", reload: ReloadRestart, key: "fill_timeout", kind: kindDuration, def: duration(defaults.FillTimeout),
		usage: "bound on an upstream blob fetch once all its clients left, and on one that receives no byte for that long",
		set:   setDuration(func(c *Config) *time.Duration { return &c.FillTimeout }, true)},
	{flag: "shutdown-timeout", reload: ReloadLive, key: "shutdown_timeout", kind: kindDuration, def: duration(defaults.ShutdownTimeout),
		usage: "on SIGTERM or SIGINT, how long responses in flight (and the fills they stream) get to finish",
		set:   setDuration(func(c *Config) *time.Duration { return &c.ShutdownTimeout }, true)},
	{flag: "negative-ttl", reload: ReloadRestart, key: "negative_ttl", kind: kindDuration, def: duration(defaults.NegativeTTL),
		usage: `how long an upstream's "not found" for a tag is answered without asking it again; 0 asks every time`,
		set:   setDuration(func(c *Config) *time.Duration { return &c.NegativeTTL }, false)},
	{flag: "probe-interval", reload: ReloadRestart, key: "probe_interval", kind: kindDuration, def: duration(defaults.ProbeInterval),
		usage: "how often an idle upstream is probed with a /v2/ ping (never a counted pull), first at start; 0 turns probes off",
		set:   setDuration(func(c *Config) *time.Duration { return &c.ProbeInterval }, false)},
	{flag: "sealed", reload: ReloadLive, key: "sealed", kind: kindBool, defDoc: "false",
		usage: "seal every upstream: never contact one (no request, token or probe); serve what is cached, answer misses 404 (or sealed-miss-status) and list them (upstreams[].sealed seals one)",
		set:   setBool(func(c *Config) *bool { return &c.Sealed })},
	{flag: "policy-file", reload: ReloadLive, key: "policy_file", defDoc: "none (or the file's policy block)",
		usage: "file of the pull-time supply-chain policy (the policy block's keys at its top level); read again on SIGHUP; see docs/policy.md",
		set:   setString(func(c *Config) *string { return &c.PolicyFile }, checkOptionalReadable)},
	{flag: "sealed-miss-status", reload: ReloadLive, key: "sealed_miss_status", kind: kindInt, def: strconv.Itoa(defaults.SealedMissStatus),
		usage: "the status of a miss on a sealed upstream: 404 (MANIFEST_UNKNOWN or BLOB_UNKNOWN) or 503 (UNAVAILABLE, which clients retry); the message says the mirror is sealed either way",
		set:   setSealedMissStatus},
	{flag: "prefetch", reload: ReloadRestart, key: "prefetch.enabled", kind: kindBool, def: strconv.FormatBool(defaults.Prefetch),
		usage: "fetch the blobs of a pulled manifest in the background",
		set:   setBool(func(c *Config) *bool { return &c.Prefetch.Enabled })},
	{flag: "prefetch-parallel", reload: ReloadRestart, key: "prefetch.parallel", kind: kindInt, def: strconv.Itoa(defaults.PrefetchParallel),
		usage: "number of concurrent prefetch fetches",
		set:   setPositiveInt(func(c *Config) *int { return &c.Prefetch.Parallel })},
	{flag: "budget-reserve", reload: ReloadRestart, key: "budget_reserve", def: strconv.Itoa(defaults.BudgetReservePercent) + "%",
		usage: "counted pulls (manifest GETs) prefetch and regcache warm leave to other clients: a count, or a percentage of the upstream's last ratelimit-limit",
		set: func(c *Config, v string) error {
			v = strings.TrimSpace(v)
			if pct, ok := strings.CutSuffix(v, "%"); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
				if err != nil || f < 0 || f > 100 {
					return fmt.Errorf("invalid reserve %q: a percentage from 0 to 100 of the upstream's ratelimit-limit, e.g. 10%%, or a count of pulls, e.g. 20", v)
				}
				c.BudgetReserve = BudgetReserve{Percent: f}
				return nil
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("invalid reserve %q: a count of pulls, e.g. 20, or a percentage of the upstream's ratelimit-limit, e.g. 10%%", v)
			}
			c.BudgetReserve = BudgetReserve{Count: n}
			return nil
		}},
	{flag: "upstream-url", reload: ReloadRestart, aliases: []string{"REGISTRY_PROXY_REMOTEURL"}, def: defaults.UpstreamURL,
		usage: "URL of the default (first) upstream registry",
		set:   setString(func(c *Config) *string { return &first(c).URL }, checkUpstreamURL)},
	{flag: "upstream-name", reload: ReloadRestart, defDoc: "host of the upstream URL, docker.io for Docker Hub",
		usage: "registry host name clients know the default upstream by",
		set:   setString(func(c *Config) *string { return &first(c).Name }, checkName)},
	{flag: "username", reload: ReloadRestart, aliases: []string{"REGISTRY_PROXY_USERNAME"}, defDoc: "anonymous",
		usage: "user name at the default upstream",
		set:   setString(func(c *Config) *string { return &first(c).Username }, nil)},
	{flag: "password", reload: ReloadRestart, aliases: []string{"REGISTRY_PROXY_PASSWORD"}, defDoc: "none",
		usage: "password or token at the default upstream; prefer --password-file",
		set: func(c *Config, v string) error {
			u := first(c)
			u.Password, u.PasswordFile = v, ""
			return nil
		},
		secret: secretValue},
	{flag: "password-file", reload: ReloadRestart, defDoc: "none",
		usage: "file holding the password of the default upstream",
		set: func(c *Config, v string) error {
			u := first(c)
			u.PasswordFile, u.Password = v, ""
			return checkReadable(v)
		}},
	{flag: "max-size", reload: ReloadLive, key: "storage.max_size", def: defaults.MaxSize,
		usage: "cache size limit, e.g. 200GiB, 500MB, bytes, or a share of the data directory's file system (at most that share of what the cache can use); 0 is unlimited",
		set: func(c *Config, v string) error {
			if pct, ok := strings.CutSuffix(strings.TrimSpace(v), "%"); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(pct), 64)
				if err != nil || f <= 0 || f > 100 {
					return fmt.Errorf("invalid size %q: a percentage of the file system is more than 0 and at most 100, e.g. 80%%", v)
				}
				c.Storage.MaxSize, c.Storage.MaxSizePercent = 0, f
				return nil
			}
			n, err := parseSize(v)
			c.Storage.MaxSize, c.Storage.MaxSizePercent = n, 0
			return err
		}},
	{flag: "max-blob-size", reload: ReloadRestart, key: "storage.max_blob_size", def: size(defaults.MaxBlobSize),
		usage: "largest blob of unknown size (no manifest or Content-Length says) a fill takes, e.g. 64GiB",
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			if err == nil && n <= 0 {
				err = fmt.Errorf("invalid size %q: must be more than 0", v)
			}
			c.Storage.MaxBlobSize = n
			return err
		}},
	{flag: "max-age", reload: ReloadLive, key: "storage.max_age", aliases: []string{"REGISTRY_PROXY_TTL"}, kind: kindDuration, defDoc: "0, off",
		usage: "evict blobs not pulled for this long; 0 is off",
		set:   setDuration(func(c *Config) *time.Duration { return &c.Storage.MaxAge }, false)},
	{flag: "scrub-interval", reload: ReloadLive, key: "storage.scrub_interval", kind: kindDuration, def: duration(defaults.ScrubInterval),
		usage: "the background scrub re-hashes the whole store once in this long (bounded by --scrub-rate); 0 turns it off",
		set:   setDuration(func(c *Config) *time.Duration { return &c.Storage.ScrubInterval }, false)},
	{flag: "scrub-rate", reload: ReloadLive, key: "storage.scrub_rate", def: size(defaults.ScrubRate),
		usage: "most bytes per second the background scrub reads, e.g. 4MiB",
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			if err == nil && n <= 0 {
				err = fmt.Errorf("invalid size %q: must be more than 0 (turn the scrub off with --scrub-interval 0)", v)
			}
			c.Storage.ScrubRate = n
			return err
		}},
	{flag: "local-cache-size", reload: ReloadRestart, key: "storage.local_cache_size", defDoc: "0, none",
		usage: "with storage.s3: bound of the local disk tier kept in front of S3, e.g. 50GiB",
		set: func(c *Config, v string) error {
			n, err := parseSize(v)
			c.Storage.LocalCacheSize = n
			return err
		}},
	{flag: "s3-endpoint", reload: ReloadRestart, key: "storage.s3.endpoint", defDoc: "none",
		usage: "S3 API URL of the shared content store, e.g. https://s3.eu-west-1.amazonaws.com",
		set:   setString(func(c *Config) *string { return &c.Storage.S3.Endpoint }, nil)},
	{flag: "s3-bucket", reload: ReloadRestart, key: "storage.s3.bucket", defDoc: "none: content on local disk",
		usage: "S3 bucket of the shared content store (it must exist)",
		set:   setString(func(c *Config) *string { return &c.Storage.S3.Bucket }, nil)},
	{flag: "s3-region", reload: ReloadRestart, key: "storage.s3.region", defDoc: "the engine's",
		usage: "S3 region",
		set:   setString(func(c *Config) *string { return &c.Storage.S3.Region }, nil)},
	{flag: "s3-prefix", reload: ReloadRestart, key: "storage.s3.prefix", defDoc: "none",
		usage: "key prefix inside the bucket, e.g. regcache/",
		set:   setString(func(c *Config) *string { return &c.Storage.S3.Prefix }, nil)},
	{flag: "s3-access-key", reload: ReloadRestart, key: "storage.s3.access_key", defDoc: "AWS_ACCESS_KEY_ID",
		usage: "S3 access key",
		set:   setString(func(c *Config) *string { return &c.Storage.S3.AccessKey }, nil)},
	{flag: "s3-secret-key", reload: ReloadRestart, key: "storage.s3.secret_key", defDoc: "AWS_SECRET_ACCESS_KEY",
		usage:  "S3 secret key; prefer the environment",
		set:    setString(func(c *Config) *string { return &c.Storage.S3.SecretKey }, nil),
		secret: secretValue},
	{flag: "s3-path-style", reload: ReloadRestart, key: "storage.s3.path_style", kind: kindBool, defDoc: "false",
		usage: "address the bucket as endpoint/bucket (most engines other than AWS)",
		set:   setBool(func(c *Config) *bool { return &c.Storage.S3.PathStyle })},
	{flag: "s3-redirect", reload: ReloadRestart, key: "storage.s3.redirect", kind: kindBool, defDoc: "false",
		usage: "answer blob hits with a short-lived presigned S3 URL instead of streaming them",
		set:   setBool(func(c *Config) *bool { return &c.Storage.S3.Redirect })},
	{flag: "cluster-redis", reload: ReloadRestart, key: "cluster.redis", defDoc: "none: a single node",
		usage:  "redis://[:password@]host:port/db (rediss:// for TLS) shared by the replicas: index, membership, leases",
		set:    setString(func(c *Config) *string { return &c.Cluster.Redis }, nil),
		secret: secretInURL},
	{flag: "cluster-advertise", reload: ReloadRestart, key: "cluster.advertise", defDoc: "none",
		usage: "URL other replicas reach this one's registry listener at, e.g. http://10.0.0.5:5000",
		set:   setString(func(c *Config) *string { return &c.Cluster.Advertise }, nil)},
	{flag: "cluster-secret", reload: ReloadRestart, key: "cluster.secret", defDoc: "none",
		usage:  "shared secret of the replicas' internal endpoint; prefer the environment",
		set:    setString(func(c *Config) *string { return &c.Cluster.Secret }, nil),
		secret: secretValue},
	{flag: "allow", reload: ReloadLive, key: "access.allow", kind: kindList, defDoc: "every client",
		usage: "comma-separated client networks (CIDR) allowed to pull",
		set:   setPrefixes(func(c *Config) *[]netip.Prefix { return &c.Access.Allow })},
	{flag: "trusted-proxies", reload: ReloadLive, key: "access.trusted_proxies", kind: kindList, defDoc: "none",
		usage: "comma-separated proxy networks (CIDR) whose X-Forwarded-For is trusted",
		set:   setPrefixes(func(c *Config) *[]netip.Prefix { return &c.Access.TrustedProxies })},
	{flag: "htpasswd", reload: ReloadLive, key: "access.htpasswd", aliases: []string{"REGISTRY_AUTH_HTPASSWD_PATH"}, defDoc: "no client logins",
		usage: "bcrypt htpasswd file of client logins",
		set:   setString(func(c *Config) *string { return &c.Access.Htpasswd }, checkOptionalReadable)},
	{flag: "private", reload: ReloadLive, key: "access.private", def: defaults.Private,
		usage: "private upstream repositories: deny, authenticated or allow",
		set:   setString(func(c *Config) *string { return &c.Access.Private }, checkPrivate)},
	{flag: "fleet-expected", reload: ReloadLive, key: "fleet.expected", kind: kindList, defDoc: "none",
		usage: "comma-separated networks (CIDR), addresses or files of them (one a line) of the nodes expected to pull through the mirror; /status lists those never seen",
		set:   setExpected},
	{flag: "tls-cert", reload: ReloadRestart, key: "tls.cert", aliases: []string{"REGISTRY_HTTP_TLS_CERTIFICATE"}, defDoc: "none, plain HTTP",
		usage: "TLS certificate file of the registry API (needs --tls-key)",
		set:   setString(func(c *Config) *string { return &c.TLS.Cert }, nil)},
	{flag: "tls-key", reload: ReloadRestart, key: "tls.key", aliases: []string{"REGISTRY_HTTP_TLS_KEY"}, defDoc: "none",
		usage: "TLS key file of the registry API (needs --tls-cert)",
		set:   setString(func(c *Config) *string { return &c.TLS.Key }, nil)},
	{flag: "log-level", reload: ReloadLive, key: "log.level", aliases: []string{"REGISTRY_LOG_LEVEL"}, def: defaults.LogLevel,
		usage: "log level: debug, info, warn or error",
		set:   setString(func(c *Config) *string { return &c.Log.Level }, checkLogLevel)},
	{flag: "log-format", reload: ReloadRestart, key: "log.format", def: defaults.LogFormat,
		usage: "log format: json or text",
		set:   setString(func(c *Config) *string { return &c.Log.Format }, checkLogFormat)},
}

// duration writes d as a flag default: "1m", "30m", "1h30m", "30s".
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// size writes n bytes as a flag default in the largest IEC unit that
// divides it ("64GiB"), or as a byte count.
func size(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.mult && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// envName is the REGCACHE_ variable of a flag: "fill-timeout" → "REGCACHE_FILL_TIMEOUT".
func envName(flag string) string {
	return "REGCACHE_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// first returns the default upstream, creating it if the list is empty.
func first(c *Config) *Upstream {
	if len(c.Upstreams) == 0 {
		c.Upstreams = []Upstream{{}}
	}
	return &c.Upstreams[0]
}

// setString returns a setter storing the value check returns (v itself when
// check is nil).
func setString(field func(*Config) *string, check func(string) (string, error)) func(*Config, string) error {
	return func(c *Config, v string) error {
		if check != nil {
			var err error
			if v, err = check(v); err != nil {
				return err
			}
		}
		*field(c) = v
		return nil
	}
}

// setDuration returns a setter for a duration that must not be negative, and
// with positive also not zero.
func setDuration(field func(*Config) *time.Duration, positive bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return invalidDuration(v)
		}
		if err := checkDuration(d, positive); err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

// invalidDuration is the error for a duration that does not parse: the
// commonest mistake is a bare number, so it shows the units.
func invalidDuration(v string) error {
	return fmt.Errorf("invalid duration %q (want a number with a unit: s, m or h, e.g. 90s, 10m, 1h30m)", v)
}

// checkDuration rejects negative durations, and zero ones when positive.
func checkDuration(d time.Duration, positive bool) error {
	switch {
	case d < 0:
		return fmt.Errorf("must not be negative, got %s", d)
	case d == 0 && positive:
		return errors.New("must be positive, got 0")
	}
	return nil
}

// setBool returns a setter for a boolean (true/false/1/0/t/f).
func setBool(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", v)
		}
		*field(c) = b
		return nil
	}
}

// setPositiveInt returns a setter for an integer of at least 1.
func setPositiveInt(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("invalid integer %q", v)
		}
		if n < 1 {
			return fmt.Errorf("must be at least 1, got %d", n)
		}
		*field(c) = n
		return nil
	}
}

// setSealedMissStatus reads sealed_miss_status: 404 or 503.
func setSealedMissStatus(c *Config, v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || (n != 404 && n != 503) {
		return fmt.Errorf("want 404 or 503, got %q", v)
	}
	c.SealedMissStatus = n
	return nil
}

// setPrefixes returns a setter for a comma-separated list of networks.
func setPrefixes(field func(*Config) *[]netip.Prefix) func(*Config, string) error {
	return func(c *Config, v string) error {
		var ps []netip.Prefix
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			p, err := parsePrefix(s)
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		*field(c) = ps
		return nil
	}
}

// setExpected sets fleet.expected: each entry a network or address, else a
// file that must be readable (its lines are the fleet table's to parse).
func setExpected(c *Config, v string) error {
	var out []string
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p.String())
			continue
		}
		if err := checkReadable(s); err != nil {
			return fmt.Errorf("%q is neither a network (CIDR), an address nor a readable file of them: %w", s, err)
		}
		out = append(out, s)
	}
	c.Fleet.Expected = out
	return nil
}

// parsePrefix parses a CIDR network such as 10.0.0.0/8; a bare address is
// taken as a single-address network. Host bits are masked off.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (want e.g. 10.0.0.0/8)", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (want e.g. 10.0.0.0/8)", s)
	}
	return p.Masked(), nil
}

// checkAddr accepts a listen address such as ":5000" or "127.0.0.1:5000".
func checkAddr(s string) (string, error) {
	if _, port, err := net.SplitHostPort(s); err != nil || port == "" {
		return "", fmt.Errorf("invalid address %q (want host:port, e.g. :5000)", s)
	}
	return s, nil
}

// checkAdminAddr is checkAddr that also accepts "" (disabled).
func checkAdminAddr(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	return checkAddr(s)
}

// checkNonEmpty rejects "".
func checkNonEmpty(s string) (string, error) {
	if strings.TrimSpace(s) == "" {
		return "", errors.New("must not be empty")
	}
	return s, nil
}

// checkUpstreamURL accepts an http(s) URL with a host and no path, query,
// fragment or credentials, and returns it without a trailing slash. Its
// errors are one sentence naming the fix; Go's parser messages are not shown.
func checkUpstreamURL(s string) (string, error) {
	shown := redact.URL(s) // never echo a password the operator put in the URL
	if !strings.Contains(s, "://") {
		return "", fmt.Errorf("invalid URL %q: add http:// or https:// in front, e.g. https://%s", shown, strings.TrimPrefix(shown, "//"))
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("invalid URL %q: want scheme://host[:port], e.g. https://registry-1.docker.io", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("invalid URL %q: scheme must be http or https", shown)
	case u.Host == "":
		return "", fmt.Errorf("invalid URL %q: no host", shown)
	case u.User != nil:
		return "", fmt.Errorf("invalid URL %q: credentials belong in username and password", shown)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "", fmt.Errorf("invalid URL %q: must not have a path, query or fragment", shown)
	}
	return strings.TrimSuffix(s, "/"), nil
}

// defaultName is the upstream Name derived from its URL: the host (with
// port), except that Docker Hub's API hosts become "docker.io". It returns ""
// for a URL that does not parse.
func defaultName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return oci.CanonicalRegistry(u.Host)
}

// checkName accepts a registry host name such as "ghcr.io" or
// "localhost:5000" and returns it in lower case.
func checkName(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "/ \t@?#") {
		return "", fmt.Errorf("invalid registry host name %q (want e.g. ghcr.io)", s)
	}
	return strings.ToLower(s), nil
}

// checkReadable accepts a path to a file that can be read.
func checkReadable(path string) error {
	if path == "" {
		return errors.New("must not be empty")
	}
	_, err := os.ReadFile(path)
	return err
}

// checkOptionalReadable accepts "" or a readable file.
func checkOptionalReadable(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	return path, checkReadable(path)
}

// checkEnum accepts one of allowed, case-insensitively, and returns it in
// lower case.
func checkEnum(what, s string, allowed ...string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	for _, a := range allowed {
		if l == a {
			return l, nil
		}
	}
	return "", fmt.Errorf("invalid %s %q (want %s)", what, s, strings.Join(allowed, ", "))
}

// checkPrivate accepts a private-repository policy.
func checkPrivate(s string) (string, error) {
	return checkEnum("policy", s, PrivateDeny, PrivateAuthenticated, PrivateAllow)
}

// checkLogLevel accepts a log level.
func checkLogLevel(s string) (string, error) {
	// Distribution's (logrus's) names, from its config.yml or REGISTRY_LOG_LEVEL.
	return checkEnum("log level", distributionLogLevel(s), "debug", "info", "warn", "error")
}

// checkLogFormat accepts a log format.
func checkLogFormat(s string) (string, error) {
	return checkEnum("log format", s, "json", "text")
}
