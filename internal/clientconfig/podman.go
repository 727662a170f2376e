package clientconfig

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// PodmanDropInName is the file regcache owns in registries.conf.d. Drop-ins
// are read in name order and a later [[registry]] with the same prefix
// replaces an earlier one, so the name sorts late.
const PodmanDropInName = "90-regcache.conf"

const podmanMarker = "# Written by 'regcache client podman enable'; 'regcache client podman disable' removes this file."

// PodmanOptions configures PodmanDropIn.
type PodmanOptions struct {
	Mirror     Mirror
	Registries []string // default docker.io
}

// PodmanDropIn returns the registries.conf.d drop-in that makes podman,
// CRI-O, buildah and skopeo try the mirror before each registry. Docker Hub
// is served at the mirror's root; any other registry under its name as a
// path prefix (regcache routes /v2/<registry>/<repository>/...).
func PodmanDropIn(opts PodmanOptions) []byte {
	regs := opts.Registries
	if len(regs) == 0 {
		regs = []string{"docker.io"}
	}
	var b bytes.Buffer
	b.WriteString(podmanMarker + "\n")
	b.WriteString("# Pulls try the regcache mirror first and fall back to the registry itself.\n")
	for _, r := range regs {
		loc := opts.Mirror.Host
		if r != "docker.io" {
			loc += "/" + r
		}
		fmt.Fprintf(&b, "\n[[registry]]\nprefix = %q\nlocation = %q\n", r, r)
		fmt.Fprintf(&b, "\n[[registry.mirror]]\nlocation = %q\n", loc)
		if opts.Mirror.Insecure {
			b.WriteString("insecure = true\n")
		}
	}
	return b.Bytes()
}

// PodmanOwned reports whether a drop-in file was written by regcache.
func PodmanOwned(src []byte) bool {
	return bytes.HasPrefix(src, []byte(podmanMarker))
}

// PodmanCheckMain checks the operator's registries.conf: a file in the old
// v1 format ([registries.search] and friends) cannot be combined with v2
// drop-ins, and podman would refuse to pull at all.
func PodmanCheckMain(src []byte) error {
	var cfg map[string]any
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return fmt.Errorf("parse registries.conf: %w", err)
	}
	if _, v1 := cfg["registries"]; v1 {
		return errors.New("registries.conf uses the v1 format ([registries.search] ...), which cannot be mixed with a v2 drop-in; convert it to v2 (unqualified-search-registries, [[registry]]) first")
	}
	return nil
}

// PodmanMirrors lists the mirror locations configured in a drop-in.
func PodmanMirrors(src []byte) ([]string, error) {
	var cfg struct {
		Registry []struct {
			Prefix string
			Mirror []struct{ Location string }
		}
	}
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return nil, fmt.Errorf("parse drop-in: %w", err)
	}
	var out []string
	for _, r := range cfg.Registry {
		for _, m := range r.Mirror {
			out = append(out, strings.TrimSpace(r.Prefix)+" -> "+m.Location)
		}
	}
	return out, nil
}

// PodmanPrefixes returns the prefix of each [[registry]] table in a
// registries.conf or drop-in, in file order; a table without a prefix
// stands for its location. containers-registries.conf.d(5): a later table
// with the same prefix replaces an earlier one as a whole.
func PodmanPrefixes(src []byte) ([]string, error) {
	var cfg struct {
		Registry []struct{ Prefix, Location string }
	}
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return nil, fmt.Errorf("parse registries configuration: %w", err)
	}
	var out []string
	for _, r := range cfg.Registry {
		p := strings.TrimSpace(r.Prefix)
		if p == "" {
			p = strings.TrimSpace(r.Location)
		}
		out = append(out, p)
	}
	return out, nil
}

// PodmanMirrorURLs returns the mirrors a regcache drop-in points at, as
// Mirror URLs (http:// for an insecure mirror, else https://), without
// duplicates. A location host[:port]/<registry> counts as host[:port].
func PodmanMirrorURLs(src []byte) ([]string, error) {
	var cfg struct {
		Registry []struct {
			Mirror []struct {
				Location string
				Insecure bool
			}
		}
	}
	if err := toml.Unmarshal(src, &cfg); err != nil {
		return nil, fmt.Errorf("parse drop-in: %w", err)
	}
	var out []string
	for _, r := range cfg.Registry {
		for _, m := range r.Mirror {
			host, _, _ := strings.Cut(strings.TrimSpace(m.Location), "/")
			u := "https://" + strings.ToLower(host)
			if m.Insecure {
				u = "http://" + strings.ToLower(host)
			}
			if !slices.Contains(out, u) {
				out = append(out, u)
			}
		}
	}
	return out, nil
}
