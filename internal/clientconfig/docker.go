package clientconfig

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

const (
	keyMirrors  = "registry-mirrors"
	keyInsecure = "insecure-registries"
)

// DockerChange records what DockerEnable added to daemon.json for one
// mirror, so that DockerDisable can take away exactly that and nothing the
// operator had before. It is kept in a state file beside daemon.json
// (dockerd refuses unknown keys inside daemon.json itself).
type DockerChange struct {
	// Mirror is the registry-mirrors entry, as written.
	Mirror string `json:"mirror"`
	// AddedMirror is true when enable added Mirror to registry-mirrors.
	AddedMirror bool `json:"added_mirror"`
	// AddedInsecure is the host[:port] enable added to insecure-registries.
	AddedInsecure string `json:"added_insecure,omitempty"`
}

// Merge combines an older record for the same mirror with a newer one: an
// entry added by either run is ours.
func (c DockerChange) Merge(newer DockerChange) DockerChange {
	c.AddedMirror = c.AddedMirror || newer.AddedMirror
	if c.AddedInsecure == "" {
		c.AddedInsecure = newer.AddedInsecure
	}
	return c
}

// DockerOptions configures DockerEnable.
type DockerOptions struct {
	Mirror   Mirror
	Position Position // First (default) or Last
}

// DockerEnable adds the mirror to registry-mirrors (and its host to
// insecure-registries for a plain-HTTP mirror) of the daemon.json in src.
// src may be nil (missing file) or empty. Every other byte is kept; the
// returned change says which entries were added. An entry already present is
// left alone and not recorded as ours.
func DockerEnable(src []byte, opts DockerOptions) ([]byte, DockerChange, error) {
	change := DockerChange{Mirror: opts.Mirror.URL}
	if len(src) == 0 {
		src = []byte("{}\n")
	}
	d, err := parseJSONObject(src)
	if err != nil {
		return nil, change, err
	}
	var added bool
	d, added, err = ensureElem(d, keyMirrors, opts.Mirror.URL, opts.Position != Last, sameMirror)
	if err != nil {
		return nil, change, err
	}
	change.AddedMirror = added
	if opts.Mirror.Insecure {
		d, added, err = ensureElem(d, keyInsecure, opts.Mirror.Host, false, equalFold)
		if err != nil {
			return nil, change, err
		}
		if added {
			change.AddedInsecure = opts.Mirror.Host
		}
	}
	return d.bytes(), change, nil
}

// DockerDisable removes what change records as added. Lists are emptied, never
// deleted: on SIGHUP dockerd applies only the keys present in the file, so a
// deleted key would leave the old mirror active until a restart.
func DockerDisable(src []byte, change DockerChange) ([]byte, error) {
	if len(src) == 0 {
		return src, nil
	}
	d, err := parseJSONObject(src)
	if err != nil {
		return nil, err
	}
	if change.AddedMirror {
		if d, err = removeValue(d, keyMirrors, change.Mirror, sameMirror); err != nil {
			return nil, err
		}
	}
	if change.AddedInsecure != "" {
		if d, err = removeValue(d, keyInsecure, change.AddedInsecure, equalFold); err != nil {
			return nil, err
		}
	}
	return d.bytes(), nil
}

// DockerSettings is what daemon.json says about registries.
type DockerSettings struct {
	Mirrors  []string
	Insecure []string
}

// DockerRead returns the registry settings of the daemon.json in src.
func DockerRead(src []byte) (DockerSettings, error) {
	var s DockerSettings
	d, err := parseJSONObject(src)
	if err != nil {
		return s, err
	}
	if m, ok := d.member(keyMirrors); ok {
		if _, s.Mirrors, err = d.stringElems(m); err != nil {
			return s, err
		}
	}
	if m, ok := d.member(keyInsecure); ok {
		if _, s.Insecure, err = d.stringElems(m); err != nil {
			return s, err
		}
	}
	return s, nil
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

// ensureElem makes sure the list under key holds value, creating the key if
// needed. It reports whether it added anything.
func ensureElem(d *jsonDoc, key, value string, first bool, same func(a, b string) bool) (*jsonDoc, bool, error) {
	raw, _ := json.Marshal(value)
	m, ok := d.member(key)
	if !ok {
		d, err := d.addMember(key, "["+string(raw)+"]")
		return d, err == nil, err
	}
	_, vals, err := d.stringElems(m)
	if err != nil {
		return nil, false, err
	}
	if slices.ContainsFunc(vals, func(v string) bool { return same(v, value) }) {
		return d, false, nil
	}
	d, err = d.insertElem(m, string(raw), first)
	if err != nil {
		return nil, false, fmt.Errorf("add %s to %q: %w", value, key, err)
	}
	return d, true, nil
}

// removeValue removes every entry equal to value from the list under key.
func removeValue(d *jsonDoc, key, value string, same func(a, b string) bool) (*jsonDoc, error) {
	for {
		m, ok := d.member(key)
		if !ok {
			return d, nil
		}
		_, vals, err := d.stringElems(m)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(vals, func(v string) bool { return same(v, value) })
		if i < 0 {
			return d, nil
		}
		if d, err = d.removeElem(m, i); err != nil {
			return nil, fmt.Errorf("remove %s from %q: %w", value, key, err)
		}
	}
}

// DockerState is the content of the state file beside daemon.json: one
// record per mirror regcache enabled.
type DockerState struct {
	Version int            `json:"version"`
	Changes []DockerChange `json:"changes"`
}

// ParseDockerState decodes a state file; nil or empty input is an empty state.
func ParseDockerState(src []byte) (DockerState, error) {
	st := DockerState{Version: 1}
	if len(src) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(src, &st); err != nil {
		return st, fmt.Errorf("decode regcache state: %w", err)
	}
	return st, nil
}

// Bytes encodes the state for writing.
func (s DockerState) Bytes() []byte {
	s.Version = 1
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

// Get returns the record for mirror.
func (s DockerState) Get(mirror string) (DockerChange, bool) {
	for _, c := range s.Changes {
		if sameMirror(c.Mirror, mirror) {
			return c, true
		}
	}
	return DockerChange{}, false
}

// Put merges c into the state.
func (s DockerState) Put(c DockerChange) DockerState {
	out := DockerState{Version: 1}
	merged := false
	for _, old := range s.Changes {
		if sameMirror(old.Mirror, c.Mirror) {
			old, merged = old.Merge(c), true
		}
		out.Changes = append(out.Changes, old)
	}
	if !merged {
		out.Changes = append(out.Changes, c)
	}
	return out
}

// Delete drops the record for mirror.
func (s DockerState) Delete(mirror string) DockerState {
	out := DockerState{Version: 1}
	for _, c := range s.Changes {
		if !sameMirror(c.Mirror, mirror) {
			out.Changes = append(out.Changes, c)
		}
	}
	return out
}
