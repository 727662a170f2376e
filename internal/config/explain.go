package config

import (
	"bytes"
	"os"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// Setting is one option of the effective configuration and where its value
// came from.
type Setting struct {
	Key    string `json:"key"`    // YAML key, or the flag name for options without one
	Flag   string `json:"flag"`   // --flag
	Env    string `json:"env"`    // REGCACHE_* variable
	Value  string `json:"value"`  // as given (secrets redacted); the default's text when unset
	Source string `json:"source"` // "flag --x", "env NAME", "file PATH", or "default"
}

// secretFlags are the options whose values Explain redacts.
var secretFlags = map[string]bool{"password": true, "admin-token": true}

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
	path := configPath(fs, lookupEnv)
	fileVals := map[string]string{}
	fileUpstreams := false
	if path != "" {
		if data, err := os.ReadFile(path); err == nil {
			var f fileConfig
			if yaml.NewDecoder(bytes.NewReader(data)).Decode(&f) == nil {
				fileVals = f.values()
				fileUpstreams = f.Upstreams != nil
			}
		}
	}
	var out []Setting
	for _, o := range options {
		s := Setting{Key: o.key, Flag: "--" + o.flag, Env: envName(o.flag), Source: "default", Value: o.def}
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
		if v, ok := fileVals[o.key]; ok && o.key != "" {
			s.Value, s.Source = v, "file "+path
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
		if secretFlags[o.flag] && s.Source != "default" && s.Value != "none" {
			s.Value = redacted
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
