package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
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
