package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/regcache/regcache/internal/rules"
)

// fileConfig is the YAML file's shape. Leaves are *string, so a value is
// absent (nil), null (nil) or text, and every value, whatever its YAML type,
// is parsed by the same option setters as environment variables and flags.
type fileConfig struct {
	Addr        *string `yaml:"addr"`
	AdminAddr   *string `yaml:"admin_addr"`
	AdminToken  *string `yaml:"admin_token"`
	Data        *string `yaml:"data"`
	Freshness   *string `yaml:"freshness"`
	FillTimeout *string `yaml:"fill_timeout"`
	Shutdown    *string `yaml:"shutdown_timeout"`
	Probe       *string `yaml:"probe_interval"`
	NegativeTTL *string `yaml:"negative_ttl"`
	Sealed      *string `yaml:"sealed"`
	// SealedMissStatus is sealed_miss_status: 404 or 503.
	SealedMissStatus *string `yaml:"sealed_miss_status"`
	// BudgetReserve is budget_reserve: a count or a percentage.
	BudgetReserve *string `yaml:"budget_reserve"`
	Prefetch      struct {
		Enabled  *string `yaml:"enabled"`
		Parallel *string `yaml:"parallel"`
	} `yaml:"prefetch"`
	Upstreams *[]fileUpstream `yaml:"upstreams"`
	Storage   struct {
		MaxSize        *string `yaml:"max_size"`
		MaxAge         *string `yaml:"max_age"`
		MaxBlobSize    *string `yaml:"max_blob_size"`
		ScrubInterval  *string `yaml:"scrub_interval"`
		ScrubRate      *string `yaml:"scrub_rate"`
		LocalCacheSize *string `yaml:"local_cache_size"`
		S3             struct {
			Endpoint  *string `yaml:"endpoint"`
			Bucket    *string `yaml:"bucket"`
			Region    *string `yaml:"region"`
			Prefix    *string `yaml:"prefix"`
			AccessKey *string `yaml:"access_key"`
			SecretKey *string `yaml:"secret_key"`
			PathStyle *string `yaml:"path_style"`
			Redirect  *string `yaml:"redirect"`
		} `yaml:"s3"`
	} `yaml:"storage"`
	Cluster struct {
		Redis     *string `yaml:"redis"`
		Advertise *string `yaml:"advertise"`
		Secret    *string `yaml:"secret"`
	} `yaml:"cluster"`
	Access struct {
		Allow          *[]string            `yaml:"allow"`
		TrustedProxies *[]string            `yaml:"trusted_proxies"`
		Htpasswd       *string              `yaml:"htpasswd"`
		Private        *string              `yaml:"private"`
		Users          *map[string][]string `yaml:"users"`
	} `yaml:"access"`
	Fleet struct {
		Expected *[]string `yaml:"expected"`
	} `yaml:"fleet"`
	TLS struct {
		Cert *string `yaml:"cert"`
		Key  *string `yaml:"key"`
	} `yaml:"tls"`
	Log struct {
		Level  *string `yaml:"level"`
		Format *string `yaml:"format"`
	} `yaml:"log"`
	Rules  *[]fileRule `yaml:"rules"`
	Policy *filePolicy `yaml:"policy"`
	// PolicyFile is policy_file.
	PolicyFile *string `yaml:"policy_file"`
}

// fileRule is one entry of the YAML rules list; values are text, parsed
// here so an error names the rule's index and field.
type fileRule struct {
	Match     *string `yaml:"match"`
	Freshness *string `yaml:"freshness"`
	MaxAge    *string `yaml:"max_age"`
	Immutable *string `yaml:"immutable"`
	Pin       *string `yaml:"pin"`
}

// rule converts a YAML entry; key is its path for errors (rules[2]).
func (fr fileRule) rule(key string) (rules.Rule, error) {
	var r rules.Rule
	var errs []error
	if fr.Match == nil || strings.TrimSpace(*fr.Match) == "" {
		errs = append(errs, fmt.Errorf("config: %s.match: missing", key))
	} else {
		r.Match = strings.TrimSpace(*fr.Match)
	}
	dur := func(field string, v *string) *time.Duration {
		if v == nil {
			return nil
		}
		d, err := time.ParseDuration(strings.TrimSpace(*v))
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s.%s: %w", key, field, invalidDuration(*v)))
			return nil
		}
		return &d
	}
	flag := func(field string, v *string) bool {
		if v == nil {
			return false
		}
		b, err := strconv.ParseBool(strings.TrimSpace(*v))
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s.%s: want true or false, got %q", key, field, *v))
		}
		return b
	}
	r.Freshness, r.MaxAge = dur("freshness", fr.Freshness), dur("max_age", fr.MaxAge)
	r.Immutable, r.Pin = flag("immutable", fr.Immutable), flag("pin", fr.Pin)
	return r, errors.Join(errs...)
}

// fileUpstream is one entry of the YAML upstreams list.
type fileUpstream struct {
	Name         string   `yaml:"name"`
	URL          string   `yaml:"url"`
	Username     string   `yaml:"username"`
	Password     string   `yaml:"password"`
	PasswordFile string   `yaml:"password_file"`
	Aliases      []string `yaml:"aliases"`
	Fallback     []string `yaml:"fallback"`
	TrustedTags  bool     `yaml:"trusted_tags"`

	CredentialHelper  string   `yaml:"credential_helper"`
	CredentialCommand []string `yaml:"credential_command"`
	CredentialTTL     string   `yaml:"credential_ttl"`
	MaxBandwidth      string   `yaml:"max_bandwidth"`
	MaxConnections    int      `yaml:"max_connections"`
	FillConnections   int      `yaml:"fill_connections"`
	Sealed            bool     `yaml:"sealed"`
}

// values returns the file's top-level settings by option key; absent and
// null ones are left out, lists are joined with commas.
func (f *fileConfig) values() map[string]string {
	m := map[string]string{}
	for key, p := range map[string]*string{
		"addr": f.Addr, "admin_addr": f.AdminAddr, "admin_token": f.AdminToken, "data": f.Data,
		"freshness": f.Freshness, "fill_timeout": f.FillTimeout, "shutdown_timeout": f.Shutdown, "probe_interval": f.Probe, "negative_ttl": f.NegativeTTL, "budget_reserve": f.BudgetReserve, "sealed": f.Sealed, "sealed_miss_status": f.SealedMissStatus, "policy_file": f.PolicyFile,
		"prefetch.enabled": f.Prefetch.Enabled, "prefetch.parallel": f.Prefetch.Parallel,
		"storage.max_size": f.Storage.MaxSize, "storage.max_age": f.Storage.MaxAge, "storage.max_blob_size": f.Storage.MaxBlobSize,
		"storage.scrub_interval": f.Storage.ScrubInterval, "storage.scrub_rate": f.Storage.ScrubRate,
		"access.htpasswd": f.Access.Htpasswd, "access.private": f.Access.Private,
		"tls.cert": f.TLS.Cert, "tls.key": f.TLS.Key,
		"log.level": f.Log.Level, "log.format": f.Log.Format,
		"storage.local_cache_size": f.Storage.LocalCacheSize,
		"storage.s3.endpoint":      f.Storage.S3.Endpoint, "storage.s3.bucket": f.Storage.S3.Bucket,
		"storage.s3.region": f.Storage.S3.Region, "storage.s3.prefix": f.Storage.S3.Prefix,
		"storage.s3.access_key": f.Storage.S3.AccessKey, "storage.s3.secret_key": f.Storage.S3.SecretKey,
		"storage.s3.path_style": f.Storage.S3.PathStyle, "storage.s3.redirect": f.Storage.S3.Redirect,
		"cluster.redis": f.Cluster.Redis, "cluster.advertise": f.Cluster.Advertise, "cluster.secret": f.Cluster.Secret,
	} {
		if p != nil {
			m[key] = *p
		}
	}
	for key, p := range map[string]*[]string{
		"access.allow": f.Access.Allow, "access.trusted_proxies": f.Access.TrustedProxies,
		"fleet.expected": f.Fleet.Expected,
	} {
		if p != nil {
			m[key] = strings.Join(*p, ",")
		}
	}
	return m
}

// applyFile reads the YAML file at path over c. Unknown keys and values of
// the wrong shape are reported with their key path and line; bad values with
// their key path.
func applyFile(c *Config, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	if errs := checkNode(doc.Content[0], reflect.TypeFor[fileConfig](), ""); len(errs) > 0 {
		for i, err := range errs {
			errs[i] = fmt.Errorf("config: %w", err)
		}
		return errors.Join(errs...)
	}
	var f fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // checkNode should have caught everything; this is the backstop
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}

	var errs []error
	vals := f.values()
	for _, o := range options {
		if v, ok := vals[o.key]; ok && o.key != "" {
			if err := o.set(c, v); err != nil {
				errs = append(errs, fmt.Errorf("config: %s: %w", o.key, err))
			}
		}
	}
	if f.Access.Users != nil {
		c.Access.Users = *f.Access.Users
	}
	if f.Rules != nil {
		c.Rules = nil
		for i, fr := range *f.Rules {
			r, err := fr.rule(fmt.Sprintf("rules[%d]", i))
			errs = append(errs, err)
			c.Rules = append(c.Rules, r)
		}
	}
	if f.Policy != nil {
		p, err := f.Policy.policy("policy")
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %w", err))
		}
		c.Policy = p
	}
	if f.Upstreams != nil {
		c.Upstreams = nil
		for i, fu := range *f.Upstreams {
			u, err := fu.upstream(fmt.Sprintf("upstreams[%d]", i))
			errs = append(errs, err)
			c.Upstreams = append(c.Upstreams, u)
		}
	}
	return errors.Join(errs...)
}

// upstream converts a YAML entry, checking its URL and names; key is the
// entry's path for errors. Credentials are checked by Validate.
func (fu fileUpstream) upstream(key string) (Upstream, error) {
	u := Upstream{Name: fu.Name, URL: fu.URL, Username: fu.Username, Password: fu.Password, PasswordFile: fu.PasswordFile,
		Aliases: fu.Aliases, Fallback: fu.Fallback, TrustedTags: fu.TrustedTags,
		CredentialHelper: fu.CredentialHelper, CredentialCommand: fu.CredentialCommand, MaxConnections: fu.MaxConnections,
		FillConnections: fu.FillConnections, Sealed: fu.Sealed}
	var errs []error
	var err error
	if fu.CredentialTTL != "" {
		if u.CredentialTTL, err = time.ParseDuration(strings.TrimSpace(fu.CredentialTTL)); err != nil {
			errs = append(errs, fmt.Errorf("config: %s.credential_ttl: %w", key, invalidDuration(fu.CredentialTTL)))
		}
	}
	if fu.MaxBandwidth != "" {
		if u.MaxBandwidth, err = parseRate(fu.MaxBandwidth); err != nil {
			errs = append(errs, fmt.Errorf("config: %s.max_bandwidth: %w", key, err))
		}
	}
	if fu.URL == "" {
		errs = append(errs, fmt.Errorf("config: %s.url: missing", key))
	} else if u.URL, err = checkUpstreamURL(fu.URL); err != nil {
		errs = append(errs, fmt.Errorf("config: %s.url: %w", key, err))
	}
	if fu.Name != "" {
		if u.Name, err = checkName(fu.Name); err != nil {
			errs = append(errs, fmt.Errorf("config: %s.name: %w", key, err))
		}
	}
	for i, a := range fu.Aliases {
		if u.Aliases[i], err = checkName(a); err != nil {
			errs = append(errs, fmt.Errorf("config: %s.aliases[%d]: %w", key, i, err))
		}
	}
	return u, errors.Join(errs...)
}

// checkNode walks a YAML node against the Go type it will be decoded into,
// reporting every unknown key (with the likely intended key, if one is
// close) and every wrong shape (a list where a value is wanted, …) with its
// dotted key path and line. Null nodes are always fine.
func checkNode(n *yaml.Node, t reflect.Type, path string) []error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	where := path
	if where == "" {
		where = "top level"
	}
	var errs []error
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return []error{fmt.Errorf("%s: want a mapping, got %s (line %d)", where, kindName(n), n.Line)}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			keyPath := k.Value
			if path != "" {
				keyPath = path + "." + k.Value
			}
			f, ok := fieldByTag(t, k.Value)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: unknown key (line %d)%s", keyPath, k.Line, didYouMean(k.Value, tagsOf(t))))
				continue
			}
			errs = append(errs, checkNode(v, f.Type, keyPath)...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return []error{fmt.Errorf("%s: want a mapping, got %s (line %d)", where, kindName(n), n.Line)}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkNode(n.Content[i+1], t.Elem(), path+"."+n.Content[i].Value)...)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return []error{fmt.Errorf("%s: want a list, got %s (line %d)", where, kindName(n), n.Line)}
		}
		for i, e := range n.Content {
			errs = append(errs, checkNode(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return []error{fmt.Errorf("%s: want a single value, got %s (line %d)", where, kindName(n), n.Line)}
		}
	}
	return errs
}

// tagsOf lists the yaml keys of struct type t.
func tagsOf(t reflect.Type) []string {
	var tags []string
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			tags = append(tags, tag)
		}
	}
	return tags
}

// fieldByTag finds the struct field whose yaml tag is name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// kindName describes a YAML node's kind for error messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}
