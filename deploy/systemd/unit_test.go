// Package systemd_test checks regcache.service with Debian's systemd tools
// and the example environment file with regcache's own configuration
// loader.
package systemd_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
)

// TestUnitVerifies: `systemd-analyze verify` accepts regcache.service with
// no warning, its offline security exposure stays under 2 of 10 (20 on
// the --threshold scale), and it carries the hardening the docs promise.
func TestUnitVerifies(t *testing.T) {
	analyze := testenv.RequireTool(t, "systemd-analyze")
	unit, err := os.ReadFile("regcache.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nExecStart=/usr/local/bin/regcache serve\n", "\nExecReload=/bin/kill -HUP $MAINPID\n",
		"\nDynamicUser=yes\n", "\nStateDirectory=regcache\n", "\nProtectSystem=strict\n", "\nNoNewPrivileges=yes\n",
		"\nEnvironment=REGCACHE_DATA=/var/lib/regcache\n", "\nEnvironmentFile=-/etc/regcache/regcache.env\n",
	} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("regcache.service lacks %q", strings.TrimSpace(want))
		}
	}

	// verify wants ExecStart's program to exist and be executable; any
	// executable will do, and this test's own binary needs no build.
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "regcache.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/regcache", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: %v\n%s", err, out)
	}
	if i := strings.Index(string(out), "Overall exposure level"); i >= 0 {
		t.Log(strings.TrimSpace(string(out[i:])))
	}
}

// TestEnvFileExample: every variable of regcache.env, the set ones and the
// commented-out ones, is one regcache knows, and the set ones load.
func TestEnvFileExample(t *testing.T) {
	f, err := os.Open("regcache.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	set := map[string]string{"REGCACHE_DATA": t.TempDir()} // the unit's Environment=
	var all []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		commented := strings.HasPrefix(line, "#")
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "#"), "=")
		if !ok || !strings.HasPrefix(name, "REGCACHE_") || strings.ContainsAny(name, " \t") {
			continue
		}
		all = append(all, name)
		if !commented {
			set[name] = value
		}
	}
	if len(set) < 4 {
		t.Fatalf("regcache.env sets only %v", set)
	}
	// A REGCACHE_* variable regcache does not know is an error of Load,
	// which looks for them in the process's environment.
	for _, name := range all {
		t.Setenv(name, "")
		_, err := config.Load(nil, os.LookupEnv)
		os.Unsetenv(name)
		if err != nil && strings.Contains(err.Error(), "unknown environment variable") {
			t.Errorf("%s: %v", name, err)
		}
	}
	c, err := config.Load(nil, func(k string) (string, bool) { v, ok := set[k]; return v, ok })
	if err != nil {
		t.Fatalf("the example's settings do not load: %v", err)
	}
	if c.Addr != ":80" || len(c.Access.Allow) == 0 || c.Storage.MaxSizePercent != 80 {
		t.Errorf("loaded %+v", c)
	}
}

// serviceSettings reads the [Service] section of a unit: every assignment
// of each key, in order (systemd's list settings accumulate over lines).
func serviceSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	section := ""
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[strings.TrimSpace(k)] = append(out[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out
}

// capabilitySet folds the lines of a capability setting the way
// systemd.exec(5) says: an empty assignment resets the set to empty, lines
// are OR-ed, and a line starting with "~" takes its capabilities away from
// every capability. all is the set "~" starts from.
func capabilitySet(lines []string, all []string) []string {
	var set []string
	for _, l := range lines {
		switch {
		case l == "":
			set = nil
		case strings.HasPrefix(l, "~"):
			drop := strings.Fields(strings.TrimPrefix(l, "~"))
			set = slices.DeleteFunc(slices.Clone(all), func(c string) bool { return slices.Contains(drop, c) })
		default:
			for _, c := range strings.Fields(l) {
				if !slices.Contains(set, c) {
					set = append(set, c)
				}
			}
		}
	}
	return set
}

// TestUnitBindsItsPort: the port regcache.env sets is one the unit lets
// regcache bind. Under 1024 (the guide's 80) that takes
// CAP_NET_BIND_SERVICE in both the bounding and the ambient set, after
// every reset line, and the host's user namespace (PrivateUsers= off);
// and /etc/regcache (ConfigurationDirectory=) must be open to the dynamic
// user, which has no fixed uid or group, for REGCACHE_CONFIG to be read.
func TestUnitBindsItsPort(t *testing.T) {
	t.Parallel()
	env, err := os.ReadFile("regcache.env")
	if err != nil {
		t.Fatal(err)
	}
	addr := ""
	for line := range strings.Lines(string(env)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "REGCACHE_ADDR="); ok {
			addr = v
		}
	}
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("regcache.env REGCACHE_ADDR=%q: %v", addr, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	if port != 80 {
		t.Errorf("regcache.env listens on %d, the guide's port is 80", port)
	}

	unit := serviceSettings(t, "regcache.service")
	if port < 1024 {
		all := []string{"CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_OVERRIDE"}
		bounding := all // no CapabilityBoundingSet= line leaves the bounding set whole
		if lines, ok := unit["CapabilityBoundingSet"]; ok {
			bounding = capabilitySet(lines, all)
		}
		ambient := capabilitySet(unit["AmbientCapabilities"], all)
		if !slices.Contains(bounding, "CAP_NET_BIND_SERVICE") || !slices.Contains(ambient, "CAP_NET_BIND_SERVICE") {
			t.Errorf("port %d: CAP_NET_BIND_SERVICE in the bounding set %v, the ambient set %v; both needed", port, bounding, ambient)
		}
		if len(bounding) != 1 || len(ambient) != 1 {
			t.Errorf("capabilities beyond CAP_NET_BIND_SERVICE: bounding %v, ambient %v", bounding, ambient)
		}
		if p := unit["PrivateUsers"]; len(p) > 0 && !slices.Contains([]string{"no", "false", "0", "off", ""}, p[len(p)-1]) {
			t.Errorf("PrivateUsers=%s: the capability would hold only in the service's own user namespace, not for the host's port %d", p[len(p)-1], port)
		}
	}

	if dirs := unit["ConfigurationDirectory"]; !slices.Contains(dirs, "regcache") {
		t.Fatalf("ConfigurationDirectory=%v", dirs)
	}
	mode := "0755" // systemd's default
	if m := unit["ConfigurationDirectoryMode"]; len(m) > 0 {
		mode = m[len(m)-1]
	}
	perm, err := strconv.ParseUint(mode, 8, 32)
	if err != nil {
		t.Fatal(err)
	}
	if perm&0o005 != 0o005 {
		t.Errorf("ConfigurationDirectoryMode=%s: /etc/regcache (root's) is closed to the dynamic user, so REGCACHE_CONFIG=/etc/regcache/regcache.yaml fails", mode)
	}
}

// TestCapabilitySet: the folding follows systemd.exec(5) on resets, OR-ed
// lines and "~".
func TestCapabilitySet(t *testing.T) {
	t.Parallel()
	all := []string{"A", "B", "C"}
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"one line", []string{"A"}, []string{"A"}},
		{"lines OR-ed", []string{"A", "B"}, []string{"A", "B"}},
		{"empty resets", []string{"A", ""}, nil},
		{"reset then set", []string{"", "B"}, []string{"B"}},
		{"tilde", []string{"~A"}, []string{"B", "C"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := capabilitySet(tt.lines, all); !slices.Equal(got, tt.want) {
				t.Errorf("capabilitySet(%q) = %q, want %q", tt.lines, got, tt.want)
			}
		})
	}
}

// TestMain doubles as the child of TestUnitCapabilitiesBind: with
// REGCACHE_TEST_BIND set it only listens there and exits (0, or 1 with the
// error).
func TestMain(m *testing.M) {
	if addr := os.Getenv("REGCACHE_TEST_BIND"); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		ln.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUnitCapabilitiesBind: the unit's capability sets, as its lines fold,
// given to an unprivileged user with no_new_privs (setpriv, as systemd
// would for DynamicUser= and NoNewPrivileges=), really bind a port under
// 1024; and with no capability the same bind is refused, so the check
// means something on this machine.
func TestUnitCapabilitiesBind(t *testing.T) {
	setpriv := testenv.RequireTool(t, "setpriv")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to change to an unprivileged user with chosen capabilities")
		}
		t.Skip("needs root to change to an unprivileged user with chosen capabilities")
	}
	unit := serviceSettings(t, "regcache.service")
	all := []string{"CAP_NET_BIND_SERVICE"}
	bounding := capabilitySet(unit["CapabilityBoundingSet"], all)
	ambient := capabilitySet(unit["AmbientCapabilities"], all)

	// The test binary, where user 65534 can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for d := dir; d != filepath.Clean(os.TempDir()) && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "bind.test")
	copyFile(t, self, bin)

	// A free port on loopback that needs the capability: under 1024, or
	// under the kernel's ip_unprivileged_port_start where that is lower.
	start := 1024
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			start = min(start, n)
		}
	}
	if start <= 1 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start is %d: every port binds without a capability here", start)
	}
	var addr string
	for port := start - 1; port > max(0, start-124) && addr == ""; port-- {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			addr = ln.Addr().String()
			ln.Close()
		}
	}
	if addr == "" {
		t.Fatalf("no free port under %d on 127.0.0.1", start)
	}

	bind := func(bounding, ambient []string) error {
		caps := func(set []string) string {
			out := "-all"
			for _, c := range set {
				out += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
			}
			return out
		}
		cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
			"--bounding-set="+caps(bounding), "--inh-caps="+caps(ambient), "--ambient-caps="+caps(ambient), bin)
		cmd.Env = []string{"REGCACHE_TEST_BIND=" + addr}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := bind(bounding, ambient); err != nil {
		t.Errorf("with the unit's capabilities (bounding %v, ambient %v), binding %s fails: %v", bounding, ambient, addr, err)
	}
	if err := bind(nil, nil); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("with no capability, binding %s: %v, want permission denied", addr, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
