package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// distributionSections are the top-level keys of Distribution's
// configuration (version 0.1). A variable or key outside them is not
// Distribution's at all: a typo, most likely.
var distributionSections = []string{"version", "log", "loglevel", "storage", "auth", "middleware", "reporting",
	"http", "notifications", "redis", "health", "proxy", "compatibility", "validation", "policy", "catalog"}

// distributionProxyKeys are the keys of Distribution's proxy section, the
// one that names the upstream and its account.
var distributionProxyKeys = []string{"proxy.remoteurl", "proxy.username", "proxy.password", "proxy.ttl"}

// unrecognisedKey reports whether key (a dotted, lower-case path of
// Distribution's configuration) is not one Distribution has, or is a near
// miss of one regcache maps: a key of no known section, a proxy key other
// than its four, or within a few letters of a mapped key (http.adr).
func unrecognisedKey(key string) bool {
	if _, mapped := distributionKeys[key]; mapped {
		return false
	}
	section, _, _ := strings.Cut(key, ".")
	switch {
	case !slices.Contains(distributionSections, section):
		return true
	case section == "proxy" && !slices.Contains(distributionProxyKeys, key):
		return true
	}
	return Suggest(key, slices.Collect(maps.Keys(distributionKeys))) != ""
}

// linkSections are the first words of variables a container platform sets
// for a service or link called "registry" (Kubernetes' REGISTRY_PORT and
// REGISTRY_SERVICE_HOST, Docker links' REGISTRY_NAME, REGISTRY_ENV_*): not
// settings of anything.
var linkSections = []string{"port", "service", "name", "env"}

// envKey is the configuration path a REGISTRY_* variable sets:
// REGISTRY_PROXY_REMOTEURL is proxy.remoteurl.
func envKey(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, registryEnvPrefix), "_", "."))
}

// refuseUnrecognised refuses to start when the default upstream has
// credentials and a Distribution variable or config.yml key is not one
// Distribution has (or is a near miss of one regcache reads): a typo in
// REGISTRY_PROXY_REMOTEURL would otherwise send the account's password to
// Docker Hub, a registry the operator did not name. Without credentials
// such names stay warnings. The error names the closest known name.
func refuseUnrecognised(c Config, path string, unusedKeys, unusedEnv []string) error {
	if len(c.Upstreams) == 0 {
		return nil
	}
	if u := c.Upstreams[0]; u.Username == "" && u.Password == "" && u.PasswordFile == "" {
		return nil
	}
	var bad []string
	aliases := registryAliases()
	for _, n := range unusedEnv {
		section, _, _ := strings.Cut(envKey(n), ".")
		if !slices.Contains(linkSections, section) && unrecognisedKey(envKey(n)) {
			bad = append(bad, "environment variable "+n+closest(n, aliases))
		}
	}
	keys := append(slices.Sorted(maps.Keys(distributionKeys)), distributionSections...) // a mistyped section is named alone
	for _, k := range unusedKeys {
		if unrecognisedKey(k) {
			bad = append(bad, path+": key "+k+closest(k, keys))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("refusing to start with upstream credentials: %s; the Distribution registry has no such setting, and a mistyped upstream setting would send the credentials to %s, which the configuration may not mean (fix the name, or remove it; docs/configuration-distribution.md lists what regcache reads)",
		strings.Join(bad, "; "), c.Upstreams[0].URL)
}

// closest is " (did you mean X?)" for the known name closest to name, or
// " (regcache reads: …)" when none is close.
func closest(name string, known []string) string {
	if m := Suggest(name, known); m != "" {
		return " (did you mean " + m + "?)"
	}
	best, bestD := "", 1<<30
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return " (the closest name regcache reads is " + best + ")"
}
