package clientconfig

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// ErrForeignEntry means the file already has an entry for the mirror that
// regcache did not write; it is left to the operator.
var ErrForeignEntry = errors.New("an entry for this mirror exists that regcache did not write")

// containerdMarker is the comment that marks the host table regcache owns.
const containerdMarker = "# managed by regcache: 'regcache client containerd disable' removes this table"

// ContainerdOptions configures ContainerdEnable.
type ContainerdOptions struct {
	Mirror Mirror
	// Registry is the registry the hosts.toml is for: "docker.io",
	// "ghcr.io", ... or "_default".
	Registry string
	// Position is First (default: the mirror is tried before the other
	// hosts in the file) or Last.
	Position Position
}

// ContainerdHostsPath returns <hostsDir>/<registry>/hosts.toml.
func ContainerdHostsPath(hostsDir, registry string) string {
	return filepath.Join(hostsDir, registry, "hosts.toml")
}

// ValidRegistry checks a --registry value: a host[:port] name or _default.
func ValidRegistry(r string) error {
	if r == "_default" {
		return nil
	}
	if r == "" || strings.ContainsAny(r, "/\\ \"'") || r == "." || r == ".." {
		return fmt.Errorf("registry %q: want a registry host name such as docker.io or ghcr.io", r)
	}
	return nil
}

// upstreamServer is the registry's own endpoint, where containerd falls back
// to when no host answers.
func upstreamServer(registry string) string {
	if registry == "docker.io" {
		return "https://registry-1.docker.io"
	}
	return "https://" + registry
}

func containerdSkeleton(registry string) string {
	s := "# Written by 'regcache client containerd enable'.\n"
	if registry != "_default" {
		s += fmt.Sprintf("server = %q\n", upstreamServer(registry))
	}
	return s
}

func containerdBlock(m Mirror, nl string) string {
	lines := []string{
		fmt.Sprintf("[host.%q]", m.URL),
		"  " + containerdMarker,
		`  capabilities = ["pull", "resolve"]`,
	}
	return strings.Join(lines, nl) + nl
}

// ContainerdEnable returns the hosts.toml for opts.Registry with a host
// table for the mirror, given the current file (nil when missing). Other
// host tables and comments are kept as they are. It returns
// ErrForeignEntry when the file has a table for the mirror that regcache did
// not write.
func ContainerdEnable(src []byte, opts ContainerdOptions) ([]byte, error) {
	if err := validTOML(src); err != nil {
		return nil, err
	}
	nl := newlineOf(src)
	text := string(src)
	if strings.TrimSpace(text) == "" {
		text = containerdSkeleton(opts.Registry)
	}
	lines := splitLines(text)
	block := containerdBlock(opts.Mirror, nl)
	s, e, ours := findHostTable(lines, opts.Mirror)
	var out string
	switch {
	case s >= 0 && !ours:
		return nil, ErrForeignEntry
	case s >= 0:
		// Replace our table in place, keeping blank lines that follow it.
		end := e
		for end > s && strings.TrimSpace(lines[end-1]) == "" {
			end--
		}
		out = join(lines[:s]) + block + join(lines[end:])
	default:
		at := len(lines)
		if opts.Position != Last {
			at = firstTable(lines)
		}
		if at < len(lines) {
			out = join(lines[:at]) + block + nl + join(lines[at:])
		} else {
			if !strings.HasSuffix(text, "\n") {
				text += nl
			}
			out = text + nl + block
		}
	}
	if err := validTOML([]byte(out)); err != nil {
		return nil, fmt.Errorf("internal error: edited hosts.toml is invalid: %w", err)
	}
	return []byte(out), nil
}

// ContainerdDisable removes regcache's host table for the mirror from a
// hosts.toml. remove is true when nothing but what enable created is left,
// so the file can be deleted. A table regcache did not write is left alone
// and ErrForeignEntry is returned.
func ContainerdDisable(src []byte, registry string, m Mirror) (out []byte, remove bool, err error) {
	if len(src) == 0 {
		return src, false, nil
	}
	if err := validTOML(src); err != nil {
		return nil, false, err
	}
	lines := splitLines(string(src))
	s, e, ours := findHostTable(lines, m)
	if s < 0 {
		return src, false, nil
	}
	if !ours {
		return src, false, ErrForeignEntry
	}
	if e == len(lines) && s > 0 && strings.TrimSpace(lines[s-1]) == "" {
		s-- // the blank line enable put before an appended table
	}
	text := join(lines[:s]) + join(lines[e:])
	return []byte(text), text == containerdSkeleton(registry), nil
}

// ContainerdHasMirror reports whether the hosts.toml has a table for m and
// whether regcache wrote it.
func ContainerdHasMirror(src []byte, m Mirror) (present, ours bool) {
	s, _, ours := findHostTable(splitLines(string(src)), m)
	return s >= 0, ours
}

// ContainerdOurMirrors lists the mirrors of the host tables regcache wrote
// in a hosts.toml (those with its marker), in file order.
func ContainerdOurMirrors(src []byte) []string {
	lines := splitLines(string(src))
	var out []string
	for _, l := range lines {
		h := hostHeader.FindStringSubmatch(l)
		if h == nil || h[2] != "]" {
			continue
		}
		m, err := ParseMirror(h[1])
		if err != nil {
			continue
		}
		if _, _, ours := findHostTable(lines, m); ours && !slices.ContainsFunc(out, func(u string) bool { return sameMirror(u, m.URL) }) {
			out = append(out, m.URL)
		}
	}
	return out
}

var hostHeader = regexp.MustCompile(`^\s*\[\s*host\s*\.\s*"([^"]*)"\s*(\.|\])`)

// findHostTable returns the line range [s, e) of the host table for m
// (header, keys and its sub-tables, up to the next table), and whether it
// carries regcache's marker. s is -1 when there is none.
func findHostTable(lines []string, m Mirror) (s, e int, ours bool) {
	s = -1
	for i, l := range lines {
		h := hostHeader.FindStringSubmatch(l)
		if h != nil && h[2] == "]" && sameMirror(h[1], m.URL) {
			s = i
			break
		}
	}
	if s < 0 {
		return -1, -1, false
	}
	e = len(lines)
	for i := s + 1; i < len(lines); i++ {
		if !isTableHeader(lines[i]) {
			if strings.TrimSpace(lines[i]) == containerdMarker {
				ours = true
			}
			continue
		}
		if h := hostHeader.FindStringSubmatch(lines[i]); h != nil && h[2] == "." && sameMirror(h[1], m.URL) {
			continue // [host."<mirror>".header] belongs to the table
		}
		e = i
		// Comment lines right above the next table belong to it.
		for e > s+1 && strings.HasPrefix(strings.TrimSpace(lines[e-1]), "#") {
			e--
		}
		break
	}
	return s, e, ours
}

// firstTable returns the line before which a table goes first: the first
// table header, or the comment lines directly above it.
func firstTable(lines []string) int {
	for i, l := range lines {
		if !isTableHeader(l) {
			continue
		}
		for i > 0 && strings.HasPrefix(strings.TrimSpace(lines[i-1]), "#") {
			i--
		}
		return i
	}
	return len(lines)
}

func isTableHeader(l string) bool {
	return strings.HasPrefix(strings.TrimSpace(l), "[")
}

func join(lines []string) string { return strings.Join(lines, "") }

func newlineOf(src []byte) string {
	if strings.Contains(string(src), "\r\n") {
		return "\r\n"
	}
	return "\n"
}

// validTOML checks that src parses as TOML, reporting the position of an
// error.
func validTOML(src []byte) error {
	var v map[string]any
	err := toml.Unmarshal(src, &v)
	var de *toml.DecodeError
	if errors.As(err, &de) {
		line, col := de.Position()
		return fmt.Errorf("invalid TOML at line %d, column %d: %s", line, col, de.Error())
	}
	if err != nil {
		return fmt.Errorf("invalid TOML: %w", err)
	}
	return nil
}

// ContainerdConfigPath returns the registry config_path set in a containerd
// config.toml (versions 1, 2 and 3), or "" when it is not set.
func ContainerdConfigPath(configTOML []byte) (string, error) {
	var cfg map[string]any
	if err := toml.Unmarshal(configTOML, &cfg); err != nil {
		return "", fmt.Errorf("parse containerd config: %w", err)
	}
	plugins, _ := cfg["plugins"].(map[string]any)
	for _, name := range []string{"io.containerd.cri.v1.images", "io.containerd.grpc.v1.cri", "cri"} {
		p, _ := plugins[name].(map[string]any)
		reg, _ := p["registry"].(map[string]any)
		if path, _ := reg["config_path"].(string); path != "" {
			return path, nil
		}
	}
	return "", nil
}
