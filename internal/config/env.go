package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// envPrefix starts every regcache variable.
const envPrefix = "REGCACHE_"

// envValue returns the variable that sets o and its value: envName(o.flag)
// if set, else the first of o.aliases that is. An empty value counts as unset
// unless o.emptyEnv.
func envValue(o option, lookupEnv func(string) (string, bool)) (name, value string, ok bool) {
	for _, name := range append([]string{envName(o.flag)}, o.aliases...) {
		if v, ok := lookupEnv(name); ok && (v != "" || o.emptyEnv) {
			return name, v, true
		}
	}
	return "", "", false
}

// applyEnv applies the REGCACHE_* variables and their Distribution aliases.
// Errors name the variable.
func applyEnv(c *Config, lookupEnv func(string) (string, bool)) error {
	type setting struct {
		o           option
		name, value string
	}
	var set []setting
	var pw, pwFile string
	for _, o := range options {
		if o.set == nil {
			continue
		}
		name, v, ok := envValue(o, lookupEnv)
		if !ok {
			continue
		}
		switch o.flag {
		case "password":
			pw = name
		case "password-file":
			pwFile = name
		}
		set = append(set, setting{o, name, v})
	}
	if pw != "" && pwFile != "" {
		return fmt.Errorf("config: %s and %s are both set; use one", pw, pwFile)
	}
	var errs []error
	for _, s := range set {
		if err := s.o.set(c, s.value); err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// knownEnv lists the REGCACHE_* variables of all options, sorted.
func knownEnv() []string {
	var names []string
	for _, o := range options {
		names = append(names, envName(o.flag))
	}
	names = append(names, envDefaults, envConfigSearch)
	slices.Sort(names)
	return names
}

// checkUnknownEnv fails on every REGCACHE_* variable among names that
// lookupEnv reports as set but that matches no option, catching typos such
// as REGCACHE_FRESHNES that would otherwise be ignored silently. Each is
// named with the likely intended variable, or the list of known ones.
func checkUnknownEnv(names []string, lookupEnv func(string) (string, bool)) error {
	known := knownEnv()
	var unknown []string
	for _, n := range names {
		if !strings.HasPrefix(n, envPrefix) || slices.Contains(known, n) || slices.Contains(unknown, n) {
			continue
		}
		if _, ok := lookupEnv(n); ok {
			unknown = append(unknown, n)
		}
	}
	slices.Sort(unknown)
	var errs []error
	for _, n := range unknown {
		if m := Suggest(n, known); m != "" {
			errs = append(errs, fmt.Errorf("config: unknown environment variable %s; did you mean %s?", n, m))
		} else {
			errs = append(errs, fmt.Errorf("config: unknown environment variable %s (known: %s)", n, strings.Join(known, ", ")))
		}
	}
	return errors.Join(errs...)
}
