package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// RegisterFlags adds every option as a flag on fs. Each flag's usage text
// names its environment variable(s) and its default, e.g.
//
//	listen address of the registry API (env REGCACHE_ADDR, REGISTRY_HTTP_ADDR) (default ":5000")
//
// Flag defaults only document; Load uses a flag's value only when it was set.
func RegisterFlags(fs *pflag.FlagSet) {
	for _, o := range options {
		usage := o.usage + " (env " + strings.Join(append([]string{envName(o.flag)}, o.aliases...), ", ") + ")"
		if o.def == "" && o.defDoc != "" {
			// pflag omits zero defaults; say what unset means instead.
			usage += " (default " + o.defDoc + ")"
		}
		switch o.kind {
		case kindString:
			fs.String(o.flag, o.def, usage)
		case kindBool:
			b, _ := strconv.ParseBool(o.def)
			fs.Bool(o.flag, b, usage)
		case kindInt:
			n, _ := strconv.Atoi(o.def)
			fs.Int(o.flag, n, usage)
		case kindDuration:
			d, _ := time.ParseDuration(o.def)
			if o.def == "" {
				d = 0
			}
			fs.Duration(o.flag, d, usage)
		case kindList:
			fs.StringSlice(o.flag, nil, usage)
		}
	}
}

// applyFlags applies the flags of fs that were set on the command line.
func applyFlags(c *Config, fs *pflag.FlagSet) error {
	if fs == nil {
		return nil
	}
	var set []string
	for _, o := range options {
		if o.set != nil && fs.Changed(o.flag) {
			set = append(set, o.flag)
		}
	}
	if slices.Contains(set, "password") && slices.Contains(set, "password-file") {
		return fmt.Errorf("config: --password and --password-file are both set; use one")
	}
	var errs []error
	for _, o := range options {
		if !slices.Contains(set, o.flag) {
			continue
		}
		f := fs.Lookup(o.flag)
		v := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = strings.Join(sv.GetSlice(), ",")
		}
		if err := o.set(c, v); err != nil {
			errs = append(errs, fmt.Errorf("config: --%s: %w", o.flag, err))
		}
	}
	return errors.Join(errs...)
}
