package config

// This file reads the configuration file of the Distribution registry (the
// `registry` image's config.yml, "version: 0.1") for drop-in use, the
// image-defaults file below every other source, the search for a config
// file when none is named, and the REGISTRY_* variables regcache does not
// use. docs/configuration-distribution.md is the table of what maps to what.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Environment variables that are not options: they say where options come
// from, so they have no flag and no YAML key.
const (
	// envDefaults names a regcache YAML file read before everything else:
	// its values are defaults that the config file, the environment and the
	// flags all override. The container image uses it for its data
	// directory and admin address, so a user's
	// REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY still wins.
	envDefaults = "REGCACHE_DEFAULTS"
	// envConfigSearch is a colon-separated list of config files looked for,
	// in order, when neither --config nor REGCACHE_CONFIG names one; the
	// first that exists is read. The image sets it to Distribution's two
	// paths; on a host it is unset, so a file another package installed
	// (Debian's docker-registry ships /etc/docker/registry/config.yml)
	// changes nothing unless asked for.
	envConfigSearch = "REGCACHE_CONFIG_SEARCH"
)

// DistributionConfigPaths are where the registry image reads its
// configuration: Distribution v3 at the first, v2 at the second (v3 ignores
// the old path). The image's REGCACHE_CONFIG_SEARCH lists them in this order.
var DistributionConfigPaths = []string{"/etc/distribution/config.yml", "/etc/docker/registry/config.yml"}

// distributionKeys maps the keys of a Distribution config.yml that regcache
// uses to the flag of the option they set. Their REGISTRY_* variables are
// the same options' aliases (options.go).
var distributionKeys = map[string]string{
	"proxy.remoteurl":                  "upstream-url",
	"proxy.username":                   "username",
	"proxy.password":                   "password",
	"proxy.ttl":                        "max-age",
	"http.addr":                        "addr",
	"http.tls.certificate":             "tls-cert",
	"http.tls.key":                     "tls-key",
	"storage.filesystem.rootdirectory": "data",
	"auth.htpasswd.path":               "htpasswd",
	"log.level":                        "log-level",
	"loglevel":                         "log-level", // Distribution 2's deprecated top-level form
}

// searchConfig returns the first existing file of REGCACHE_CONFIG_SEARCH,
// or "".
func searchConfig(lookupEnv func(string) (string, bool)) string {
	list, _ := lookupEnv(envConfigSearch)
	for p := range strings.SplitSeq(list, ":") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	return ""
}

// applyConfigFile reads path over c, as Distribution's format when its top
// level has a version key, else as regcache's. It returns the keys of a
// Distribution file that regcache does not use, for the warning or the
// refusal of refuseUnrecognised.
func applyConfigFile(c *Config, path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if v, ok := distributionVersion(&doc); ok {
		return applyDistribution(c, path, &doc, v)
	}
	return nil, applyFile(c, path)
}

// distributionVersion returns the value of the top-level version key, and
// whether there is one.
func distributionVersion(doc *yaml.Node) (string, bool) {
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return "", false
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "version" {
			return top.Content[i+1].Value, true
		}
	}
	return "", false
}

// applyDistribution applies a Distribution config.yml: the keys of
// distributionKeys through their options' setters; it returns every other
// key.
func applyDistribution(c *Config, path string, doc *yaml.Node, version string) ([]string, error) {
	if f, err := strconv.ParseFloat(version, 64); err != nil || f != 0.1 {
		return nil, fmt.Errorf("config: %s: version %q: regcache reads Distribution's configuration version 0.1", path, version)
	}
	top := doc.Content[0]
	var unused []string
	var errs []string
	set := map[string]bool{} // flags set, to refuse two keys for one option
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := strings.ToLower(k.Value)
			if prefix != "" {
				key = prefix + "." + key
			}
			if v.Kind == yaml.AliasNode {
				v = v.Alias
			}
			if key == "version" {
				continue
			}
			if flag, ok := distributionKeys[key]; ok {
				if v.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Sprintf("%s: want a single value, got %s (line %d)", key, kindName(v), v.Line))
					continue
				}
				if v.Tag == "!!null" || v.Value == "" {
					continue // as absent, like Distribution
				}
				if set[flag] {
					errs = append(errs, fmt.Sprintf("%s: sets the same option as another key (line %d); keep one", key, k.Line))
					continue
				}
				set[flag] = true
				if err := optionByFlag(flag).set(c, v.Value); err != nil {
					errs = append(errs, fmt.Sprintf("%s: %v", key, err))
				}
				continue
			}
			if v.Kind == yaml.MappingNode && usesSomeKey(key) {
				walk(v, key)
				continue
			}
			unused = append(unused, key)
		}
	}
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config: %s: top level: want a mapping, got %s", path, kindName(top))
	}
	walk(top, "")
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %s: %s", path, strings.Join(errs, "; "))
	}
	return unused, nil
}

// unusedKeysWarning is the start-up warning for the keys of a Distribution
// file that regcache does not use, or nil.
func unusedKeysWarning(path string, unused []string) []string {
	if len(unused) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s is Distribution's configuration (version 0.1); regcache ignores these keys of it, which it does not use: %s (docs/configuration-distribution.md lists the keys it maps)",
		path, strings.Join(unused, ", "))}
}

// usesSomeKey reports whether a key of distributionKeys lies below prefix.
func usesSomeKey(prefix string) bool {
	for k := range distributionKeys {
		if strings.HasPrefix(k, prefix+".") {
			return true
		}
	}
	return false
}

// distributionLogLevel turns Distribution's (logrus's) level names into
// regcache's: warning is warn, trace debug, fatal and panic error; other
// values are returned as they are.
func distributionLogLevel(v string) string {
	switch l := strings.ToLower(strings.TrimSpace(v)); l {
	case "trace":
		return "debug"
	case "warning":
		return "warn"
	case "fatal", "panic":
		return "error"
	default:
		return v
	}
}

// optionByFlag returns the option of flag; the flag must exist.
func optionByFlag(flag string) option {
	for _, o := range options {
		if o.flag == flag {
			return o
		}
	}
	panic("config: no option " + flag)
}

// registryEnvPrefix starts the Distribution registry's variables.
const registryEnvPrefix = "REGISTRY_"

// unusedRegistryEnv returns the REGISTRY_* variables among names that
// lookupEnv reports as set and that no option reads, sorted. The registry
// image honours every REGISTRY_<KEY PATH>; regcache reads only the aliases
// of its options.
func unusedRegistryEnv(names []string, lookupEnv func(string) (string, bool)) []string {
	var known []string
	for _, o := range options {
		known = append(known, o.aliases...)
	}
	var unused []string
	for _, n := range names {
		if !strings.HasPrefix(n, registryEnvPrefix) || slices.Contains(known, n) || slices.Contains(unused, n) {
			continue
		}
		if _, ok := lookupEnv(n); ok {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	return unused
}

// registryAliases are the Distribution variables regcache reads, sorted.
func registryAliases() []string {
	var known []string
	for _, o := range options {
		known = append(known, o.aliases...)
	}
	slices.Sort(known)
	return known
}

// unusedEnvWarning is the start-up warning for the REGISTRY_* variables
// regcache does not use, or nil.
func unusedEnvWarning(unused []string) []string {
	if len(unused) == 0 {
		return nil
	}
	return []string{fmt.Sprintf("regcache ignores these environment variables of the Distribution registry, which it does not use: %s (it reads %s; docs/configuration-distribution.md lists them)",
		strings.Join(unused, ", "), strings.Join(registryAliases(), ", "))}
}

// applyDefaults reads the REGCACHE_DEFAULTS file, if set, over c.
func applyDefaults(c *Config, lookupEnv func(string) (string, bool)) error {
	path, _ := lookupEnv(envDefaults)
	if path = strings.TrimSpace(path); path == "" {
		return nil
	}
	if err := applyFile(c, filepath.Clean(path)); err != nil {
		return fmt.Errorf("%w (the defaults file %s names)", err, envDefaults)
	}
	return nil
}
