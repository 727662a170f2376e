package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/regcache/regcache/internal/defaults"
)

// readDoc returns docs/configuration.md.
func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestConfigurationDocExampleLoads: the annotated example in
// docs/configuration.md is a configuration serve accepts.
func TestConfigurationDocExampleLoads(t *testing.T) {
	doc := readDoc(t)
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("docs/configuration.md has no yaml example")
	}
	dir := t.TempDir()
	example := m[1]
	// The example names files of a real host; point them at files that exist.
	for _, f := range []string{"/run/secrets/hub-token", "/etc/regcache/htpasswd"} {
		local := filepath.Join(dir, filepath.Base(f))
		content := "token\n"
		if strings.HasSuffix(f, "htpasswd") {
			content = "ci:$2y$05$Ux4Rk4C8yq6U8Qe2xXJm5u3GQd8a8b9m8g0uA8Qm3yYq1dI3J1a6W\n"
		}
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		example = strings.ReplaceAll(example, f, local)
	}
	if _, err := loadWith(t, example, nil); err != nil {
		t.Errorf("the example in docs/configuration.md does not load: %v", err)
	}
}

// TestConfigurationDocNamesEveryKey: every YAML key the file accepts is in
// docs/configuration.md, in the example or the table.
func TestConfigurationDocNamesEveryKey(t *testing.T) {
	doc := readDoc(t)
	var walk func(rt reflect.Type, prefix string)
	walk = func(rt reflect.Type, prefix string) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct {
			return
		}
		for i := range rt.NumField() {
			f := rt.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			key := prefix + tag
			if !strings.Contains(doc, "`"+key) && !strings.Contains(doc, tag+":") {
				t.Errorf("docs/configuration.md does not document %s", key)
			}
			walk(f.Type, key+".")
		}
	}
	walk(reflect.TypeFor[fileConfig](), "")
	for _, o := range options {
		if o.flag != flagConfig && !strings.Contains(doc, "`--"+o.flag+"`") {
			t.Errorf("docs/configuration.md does not name --%s", o.flag)
		}
	}
}

// TestEveryOptionKeyIsReadFromTheFile: each option's YAML key is a field of
// the file's shape that values() passes on (an option added to the table
// but not to fileConfig would be an unknown key in every file).
func TestEveryOptionKeyIsReadFromTheFile(t *testing.T) {
	var f fileConfig
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		for i := range v.NumField() {
			fv := v.Field(i)
			switch {
			case fv.Kind() == reflect.Struct:
				fill(fv)
			case fv.Type() == reflect.TypeFor[*string]():
				s := "x"
				fv.Set(reflect.ValueOf(&s))
			case fv.Type() == reflect.TypeFor[*[]string]():
				fv.Set(reflect.ValueOf(&[]string{"x"}))
			}
		}
	}
	fill(reflect.ValueOf(&f).Elem())
	vals := f.values()
	for _, o := range options {
		if _, ok := vals[o.key]; o.key != "" && !ok {
			t.Errorf("option --%s has YAML key %s, which the file does not read", o.flag, o.key)
		}
	}
}

// TestREADMEDefaults: the README's configuration table lists every option
// with the default the option table gives it (the one --help shows and
// Load applies).
func TestREADMEDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // flag → the row's default column
	for line := range strings.SplitSeq(string(b), "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 4 || !strings.Contains(cells[0], "`--") {
			continue
		}
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(cells[0], -1) {
			rows[m[1]] = cells[len(cells)-1]
		}
	}
	for _, o := range options {
		col, ok := rows[o.flag]
		switch {
		case !ok:
			t.Errorf("README's configuration table has no row for --%s", o.flag)
		case o.def != "" && !strings.Contains(col, "`"+o.def+"`"):
			t.Errorf("README gives --%s the default %q; the option table says %q", o.flag, strings.TrimSpace(col), o.def)
		}
	}
}

// TestDefaultsAreTheTable: the Config of no settings is each option's
// default as --help shows it.
func TestDefaultsAreTheTable(t *testing.T) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	RegisterFlags(fs)
	for _, o := range options {
		f := fs.Lookup(o.flag)
		if o.def == "" || (f != nil && o.kind == kindDuration && sameDuration(f.DefValue, o.def)) {
			continue
		}
		if f == nil || f.DefValue != o.def {
			t.Errorf("--%s: --help default %v, table %q", o.flag, f, o.def)
		}
	}
	c, err := loadWith(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Freshness != defaults.Freshness || c.FillTimeout != defaults.FillTimeout || c.Prefetch.Parallel != defaults.PrefetchParallel ||
		c.Storage.MaxBlobSize != defaults.MaxBlobSize || c.Upstreams[0].URL != defaults.UpstreamURL || c.Addr != defaults.Addr {
		t.Errorf("Load with nothing set is not the defaults package: %+v", c)
	}
}

func sameDuration(a, b string) bool {
	da, err1 := time.ParseDuration(a)
	db, err2 := time.ParseDuration(b)
	return err1 == nil && err2 == nil && da == db
}
