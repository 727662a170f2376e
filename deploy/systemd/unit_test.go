// Package systemd_test checks regcache.service with Debian's systemd tools
// and the example environment file with regcache's own configuration
// loader.
package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
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
	if c.Addr != ":5000" || len(c.Access.Allow) == 0 || c.Storage.MaxSizePercent != 80 {
		t.Errorf("loaded %+v", c)
	}
}
