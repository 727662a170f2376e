package config

import (
	"bytes"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/regcache/regcache/internal/redact"
)

// Setting is one option of the effective configuration and where its value
// came from.
type Setting struct {
	Key    string `json:"key"`    // YAML key, or the flag name for options without one
	Flag   string `json:"flag"`   // --flag
	Env    string `json:"env"`    // REGCACHE_* variable
	Value  string `json:"value"`  // as given (secrets redacted); the default's text when unset
	Source string `json:"source"` // "flag --x", "env NAME", "file PATH", or "default"
	Reload string `json:"reload"` // what a SIGHUP does with a change: applied live, needs a restart, command line only
}

// Explain loads the configuration as Load does and tells, for every
// option, the value in force and which source gave it (precedence flag >
// environment > file > default). Secrets are redacted. The returned Config
// is Load's.
func Explain(fs *pflag.FlagSet, lookupEnv func(string) (string, bool)) ([]Setting, Config, error) {
	c, err := Load(fs, lookupEnv)
	if err != nil {
		return nil, Config{}, err
	}
	if lookupEnv == nil {
		lookupEnv = func(string) (string, bool) { return "", false }
	}
	// The file Load read (named, or found by REGCACHE_CONFIG_SEARCH), in
	// regcache's format or Distribution's, and the image's defaults file.
	path := c.File
	fileVals, fileUpstreams := fileValues(path)
	defaultsPath, _ := lookupEnv(envDefaults)
	defaultsPath = strings.TrimSpace(defaultsPath)
	defaultVals, _ := fileValues(defaultsPath)
	var out []Setting
	for _, o := range options {
		if v, ok := defaultVals[o.key]; ok && o.key != "" {
			defaultVals["\x00"+o.flag] = v
		}
	}
	for _, o := range options {
		s := Setting{Key: o.key, Flag: "--" + o.flag, Env: envName(o.flag), Source: "default", Value: o.def, Reload: o.reload.String()}
		if k, ok := firstUpstreamKeys[o.flag]; ok {
			s.Key = k
		} else if s.Key == "" {
			s.Key = o.flag
		}
		if s.Value == "" {
			s.Value = o.defDoc
		}
		if o.flag == flagConfig {
			s.Key, s.Value = "(file)", path
			if path == "" {
				s.Value = "none"
			}
		}
		if v, ok := defaultVals["\x00"+o.flag]; ok {
			s.Value, s.Source = v, "defaults file "+defaultsPath+" ("+envDefaults+")"
		}
		if v, ok := fileVals[o.key]; ok && o.key != "" {
			s.Value, s.Source = v, "file "+path
		}
		if v, ok := fileVals["\x00"+o.flag]; ok {
			s.Value, s.Source = v, "file "+path+" (Distribution's config.yml)"
		}
		if o.key == "" && o.flag != flagConfig && fileUpstreams && isFirstUpstreamOption(o.flag) {
			s.Value, s.Source = firstUpstreamValue(c, o.flag), "file "+path+" (upstreams[0])"
		}
		if name, v, ok := envValue(o, lookupEnv); ok {
			s.Value, s.Source = v, "env "+name
		}
		if fs != nil && fs.Changed(o.flag) {
			if f := fs.Lookup(o.flag); f != nil {
				s.Value, s.Source = f.Value.String(), "flag --"+o.flag
			}
		}
		if s.Value == "" {
			s.Value = "none"
		}
		if s.Source != "default" && s.Value != "none" {
			switch o.secret {
			case secretValue:
				s.Value = redacted
			case secretInURL:
				s.Value = redact.URL(s.Value)
			}
		}
		out = append(out, s)
	}
	return out, c, nil
}

// firstUpstreamKeys are the options that set a field of the default
// upstream, by flag, with the YAML key a file gives it under.
var firstUpstreamKeys = map[string]string{"upstream-url": "upstreams[0].url", "upstream-name": "upstreams[0].name",
	"username": "upstreams[0].username", "password": "upstreams[0].password", "password-file": "upstreams[0].password_file"}

// isFirstUpstreamOption reports whether flag sets a field of the default
// upstream, which a file gives in upstreams[0].
func isFirstUpstreamOption(flag string) bool {
	_, ok := firstUpstreamKeys[flag]
	return ok
}

// firstUpstreamValue is the default upstream's field named by flag.
func firstUpstreamValue(c Config, flag string) string {
	if len(c.Upstreams) == 0 {
		return ""
	}
	u := c.Upstreams[0]
	switch flag {
	case "upstream-url":
		return u.URL
	case "upstream-name":
		return u.Name
	case "username":
		return u.Username
	case "password":
		return u.Password
	default:
		return u.PasswordFile
	}
}

// fileValues reads a configuration file's settings for Explain: by YAML
// key for regcache's format, by "\x00"+flag for Distribution's (its keys
// map to options, distributionKeys); and whether it lists upstreams.
// A file that does not read gives nothing (Load has read it already).
func fileValues(path string) (map[string]string, bool) {
	vals := map[string]string{}
	if path == "" {
		return vals, false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return vals, false
	}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return vals, false
	}
	if _, ok := distributionVersion(&doc); ok {
		var walk func(n *yaml.Node, prefix string)
		walk = func(n *yaml.Node, prefix string) {
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				key := strings.ToLower(n.Content[i].Value)
				if prefix != "" {
					key = prefix + "." + key
				}
				v := n.Content[i+1]
				if flag, ok := distributionKeys[key]; ok && v.Kind == yaml.ScalarNode && v.Value != "" {
					vals["\x00"+flag] = v.Value
				} else if v.Kind == yaml.MappingNode {
					walk(v, key)
				}
			}
		}
		walk(doc.Content[0], "")
		return vals, false
	}
	var f fileConfig
	if yaml.NewDecoder(bytes.NewReader(data)).Decode(&f) != nil {
		return vals, false
	}
	return f.values(), f.Upstreams != nil
}
