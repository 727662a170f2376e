package config

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestEveryOptionHasReloadClass: a row of the option table, or a key only
// the file has, without a reload class fails here, so a SIGHUP can never
// leave a changed option unnamed.
func TestEveryOptionHasReloadClass(t *testing.T) {
	for _, o := range options {
		if o.reload < ReloadLive || o.reload > ReloadCommandLine {
			t.Errorf("--%s has no reload class", o.flag)
		}
		if o.reload == ReloadCommandLine && o.key != "" {
			t.Errorf("--%s is command line only but has the YAML key %s", o.flag, o.key)
		}
	}
	for _, k := range fileOnlyKeys {
		if k.reload < ReloadLive || k.reload > ReloadCommandLine {
			t.Errorf("%s has no reload class", k.key)
		}
	}
}

// TestEveryKeyHasAField: each reload key names Config fields, and every
// field of Config (but File and Warnings, which are not options) is set by
// some key, so a field added without a key fails here.
func TestEveryKeyHasAField(t *testing.T) {
	var c Config
	v := reflect.ValueOf(&c).Elem()
	covered := map[string]bool{}
	for _, k := range ReloadKeys() {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: %v", k.Key, r)
				}
			}()
			for _, f := range fieldsOf(v, k.Key) {
				covered[fieldPath(v, f)] = true
			}
		}()
	}
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		for i := range v.NumField() {
			f := v.Type().Field(i)
			path := prefix + f.Name
			if path == "File" || path == "Warnings" || covered[path] {
				continue
			}
			if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() == v.Type().PkgPath() {
				walk(v.Field(i), path+".")
				continue
			}
			t.Errorf("Config.%s is set by no option key", path)
		}
	}
	walk(v, "")
}

// fieldPath names f, a field inside root, as "Storage.S3.Bucket".
func fieldPath(root, f reflect.Value) string {
	var find func(v reflect.Value, prefix string) string
	find = func(v reflect.Value, prefix string) string {
		for i := range v.NumField() {
			fv := v.Field(i)
			name := prefix + v.Type().Field(i).Name
			if fv.UnsafeAddr() == f.UnsafeAddr() && fv.Type() == f.Type() {
				return name
			}
			if fv.Kind() == reflect.Struct {
				if p := find(fv, name+"."); p != "" {
					return p
				}
			}
		}
		return ""
	}
	return find(root, "")
}

// TestReconcile: a SIGHUP names each changed option with its class; the
// configuration in effect takes the live ones and keeps the running value
// of those that need a restart.
func TestReconcile(t *testing.T) {
	run := defaultConfig()
	run.Upstreams = []Upstream{{Name: "docker.io", URL: "https://registry-1.docker.io"}}
	if _, ch := Reconcile(run, run); len(ch) != 0 {
		t.Fatalf("unchanged, got %v", ch)
	}
	next := run
	next.Upstreams = []Upstream{{Name: "docker.io", URL: "https://registry-1.docker.io", Fallback: []string{"mirror.gcr.io"}}}
	next.Storage.ScrubInterval = time.Hour                    // live
	next.Storage.MaxSize, next.Storage.MaxSizePercent = 0, 50 // live, as a percentage
	next.ProbeInterval = time.Minute                          // restart
	next.Cluster.Secret = "another"                           // restart
	next.Access.Users = map[string][]string{"a": {"x/*"}}     // live, file only
	eff, ch := Reconcile(run, next)
	want := []Change{
		{"probe_interval", ReloadRestart}, {"storage.max_size", ReloadLive}, {"storage.scrub_interval", ReloadLive},
		{"cluster.secret", ReloadRestart}, {"upstreams", ReloadRestart}, {"access.users", ReloadLive},
	}
	if !slices.Equal(ch, want) {
		t.Errorf("changes\n got %v\nwant %v", ch, want)
	}
	if eff.Storage.ScrubInterval != time.Hour || eff.Storage.MaxSizePercent != 50 || eff.Access.Users["a"] == nil {
		t.Errorf("live values not in effect: %+v", eff.Storage)
	}
	if eff.ProbeInterval != run.ProbeInterval || eff.Cluster.Secret != run.Cluster.Secret || len(eff.Upstreams[0].Fallback) != 0 {
		t.Errorf("restart values changed in the running configuration: %v %q %v", eff.ProbeInterval, eff.Cluster.Secret, eff.Upstreams)
	}
}

// TestConfigurationDocReloadColumn: the "reloads on SIGHUP" column of
// docs/configuration.md says yes exactly for the options applied live.
// (Rows of upstreams[...] fields are the upstreams key: restart; a
// password file's contents are read again whatever the class.)
func TestConfigurationDocReloadColumn(t *testing.T) {
	doc := readDoc(t)
	class := map[string]Reload{}
	for _, k := range ReloadKeys() {
		class[k.Key] = k.Reload
	}
	tick := regexp.MustCompile("`([^`]+)`")
	seen := map[string]bool{}
	for line := range strings.Lines(doc) {
		cols := strings.Split(strings.TrimSpace(line), "|")
		if len(cols) != 7 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`") {
			continue
		}
		live := strings.HasPrefix(strings.TrimSpace(cols[5]), "yes")
		parent := ""
		for _, m := range tick.FindAllStringSubmatch(cols[1], -1) {
			key := m[1]
			if strings.HasPrefix(key, ".") {
				key = parent + key
			} else if i := strings.LastIndex(key, "."); i >= 0 {
				parent = key[:i]
			}
			if strings.HasPrefix(key, "upstreams[") {
				continue
			}
			c, ok := class[key]
			if !ok {
				t.Errorf("docs/configuration.md lists %s, which is no option key", key)
				continue
			}
			seen[key] = true
			if live != (c == ReloadLive) {
				t.Errorf("docs/configuration.md: %s reloads %q, but the option table says %s", key, strings.TrimSpace(cols[5]), c)
			}
		}
	}
	for k := range class {
		if !seen[k] && k != "upstreams" {
			t.Errorf("docs/configuration.md's table has no row for %s", k)
		}
	}
}

// TestEveryUpstreamFieldIsRead: each field of an upstream's YAML entry
// reaches config.Upstream (a field dropped in the conversion is an option
// parsed and then ignored: upstreams[].sealed was, once, after a merge).
func TestEveryUpstreamFieldIsRead(t *testing.T) {
	fu := fileUpstream{Name: "ghcr.io", URL: "https://ghcr.io", Username: "u", Password: "p", PasswordFile: "/f",
		Aliases: []string{"a"}, Fallback: []string{"f"}, TrustedTags: true, CredentialHelper: "h", CredentialCommand: []string{"c"},
		CredentialTTL: "1h", MaxBandwidth: "1MiB/s", MaxConnections: 2, FillConnections: 3, Sealed: true}
	fv := reflect.ValueOf(fu)
	for i := range fv.NumField() {
		if fv.Field(i).IsZero() {
			t.Fatalf("this test sets no value for fileUpstream.%s: give it one", fv.Type().Field(i).Name)
		}
	}
	u, _ := fu.upstream("upstreams[0]")
	uv := reflect.ValueOf(u)
	for i := range fv.NumField() {
		name := fv.Type().Field(i).Name
		f := uv.FieldByName(name)
		if !f.IsValid() {
			t.Errorf("fileUpstream.%s has no config.Upstream field", name)
			continue
		}
		if f.IsZero() {
			t.Errorf("upstreams[].%s is parsed but does not reach config.Upstream", name)
		}
	}
}
