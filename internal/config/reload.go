package config

import (
	"reflect"
	"slices"
	"strings"
)

// Reload is what a SIGHUP does with an option whose value changed. Every
// row of the option table, and every key only the YAML file has, names
// one; the reload logic and its report are derived from them, so a new
// option cannot be silently ignored on reload.
type Reload int

const (
	// ReloadLive options are applied to the running mirror on SIGHUP.
	ReloadLive Reload = iota + 1
	// ReloadRestart options are reported as needing a restart: the
	// running mirror keeps its value until then.
	ReloadRestart
	// ReloadCommandLine options are given on the command line or in the
	// environment, which a SIGHUP does not change (--config).
	ReloadCommandLine
)

func (r Reload) String() string {
	switch r {
	case ReloadLive:
		return "applied live"
	case ReloadRestart:
		return "needs a restart"
	case ReloadCommandLine:
		return "command line only"
	}
	return "no reload class"
}

// fileOnlyKeys are the YAML keys that are not rows of the option table,
// with their reload class. upstreams covers every field of every
// upstream, including the default one the upstream flags set (the
// contents of a password_file are re-read on each SIGHUP: that is not a
// change of the configuration).
var fileOnlyKeys = []struct {
	key    string
	reload Reload
}{
	{"upstreams", ReloadRestart},
	{"access.users", ReloadLive},
	{"rules", ReloadLive},
	{"policy", ReloadLive},
}

// Change is an option whose value differs between two configurations.
type Change struct {
	Key    string // the YAML key
	Reload Reload
}

// ReloadKeys lists every option's YAML key with its reload class, in
// --help order, then the file-only keys. Options without a key of their
// own (the default upstream's flags) are covered by "upstreams".
func ReloadKeys() []Change {
	var out []Change
	for _, o := range options {
		if o.key != "" {
			out = append(out, Change{Key: o.key, Reload: o.reload})
		}
	}
	for _, k := range fileOnlyKeys {
		out = append(out, Change{Key: k.key, Reload: k.reload})
	}
	return out
}

// Reconcile compares the running configuration with the one a SIGHUP
// loaded. It returns every changed option with its class, and the
// configuration now in effect: next, with the value of every option that
// needs a restart kept as it runs.
func Reconcile(running, next Config) (effective Config, changes []Change) {
	effective = next
	rv, nv, ev := reflect.ValueOf(&running).Elem(), reflect.ValueOf(&next).Elem(), reflect.ValueOf(&effective).Elem()
	for _, k := range ReloadKeys() {
		rf, nf, ef := fieldsOf(rv, k.Key), fieldsOf(nv, k.Key), fieldsOf(ev, k.Key)
		same := true
		for i := range rf {
			same = same && reflect.DeepEqual(rf[i].Interface(), nf[i].Interface())
		}
		if same {
			continue
		}
		changes = append(changes, k)
		if k.Reload != ReloadLive {
			for i := range rf {
				ef[i].Set(rf[i])
			}
		}
	}
	return effective, changes
}

// fieldsOf finds the Config fields a YAML key sets: "storage.scrub_rate"
// is Storage.ScrubRate (each part matched without underscores, ignoring
// case), and a sibling field named like it with "Percent" appended
// (storage.max_size: "80%") goes with it. It panics on a key that names
// no field: TestEveryKeyHasAField keeps the table and Config in step.
func fieldsOf(v reflect.Value, key string) []reflect.Value {
	parts := strings.Split(key, ".")
	var name string
	for i, p := range parts {
		name = strings.ReplaceAll(p, "_", "")
		t := v.Type()
		f, ok := t.FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, name) })
		if !ok {
			panic("config: no field for key " + key)
		}
		if i < len(parts)-1 {
			v = v.FieldByIndex(f.Index)
			continue
		}
		out := []reflect.Value{v.FieldByIndex(f.Index)}
		if pf, ok := t.FieldByName(f.Name + "Percent"); ok {
			out = append(out, v.FieldByIndex(pf.Index))
		}
		return out
	}
	return nil
}

// Account is one reload's account: what was applied (Reloaded, in words),
// the options changed (Reconcile's) and the errors of the parts kept as
// they were.
type Account struct {
	Reloaded []string
	Changes  []Change
	Errs     []error
}

// Fail records a part that kept its old state: its error, and its keys
// (those starting with prefix) named in neither list.
func (r *Account) Fail(err error, prefix string) {
	r.Errs = append(r.Errs, err)
	r.Changes = slices.DeleteFunc(r.Changes, func(c Change) bool { return strings.HasPrefix(c.Key, prefix) })
}

// Named lists every changed option as applied or as needing a restart,
// never neither: a live option no part named is named by its key.
func (r *Account) Named() (reloaded, restart []string) {
	reloaded = r.Reloaded
	for _, c := range r.Changes {
		switch {
		case c.Reload == ReloadRestart:
			restart = append(restart, c.Key)
		case !slices.ContainsFunc(reloaded, func(s string) bool { return strings.HasPrefix(s, c.Key) }):
			reloaded = append(reloaded, c.Key)
		}
	}
	return reloaded, restart
}
