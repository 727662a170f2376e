package clientconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file edits a JSON object in place, byte for byte. dockerd's
// daemon.json is owned by the operator: a decode/encode round trip through a
// map would reorder keys, reformat numbers and drop the indentation, so the
// editor works on offsets into the original text and splices new bytes in.

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// jsonDoc is a top-level JSON object with the offsets of its members.
type jsonDoc struct {
	src     []byte // document without the BOM
	bom     bool
	open    int // offset of '{'
	close   int // offset of '}'
	members []jsonMember
}

// jsonMember is one "key": value pair of the top-level object.
type jsonMember struct {
	key      string // decoded
	keyStart int    // offset of the key's opening quote
	keyEnd   int    // offset just past the key's closing quote
	valStart int
	valEnd   int
}

// jsonElem is one element of an array value.
type jsonElem struct {
	start, end int
}

// SyntaxError reports invalid JSON with the position of the problem.
type SyntaxError struct {
	Line, Column int
	Offset       int64
	Msg          string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at line %d, column %d (byte %d): %s", e.Line, e.Column, e.Offset, e.Msg)
}

// parseJSONObject parses src, which must hold one JSON object. An empty or
// all-whitespace src is treated as "{}".
func parseJSONObject(src []byte) (*jsonDoc, error) {
	d := &jsonDoc{}
	if bytes.HasPrefix(src, utf8BOM) {
		d.bom = true
		src = src[len(utf8BOM):]
	}
	if len(bytes.TrimSpace(src)) == 0 {
		src = append(append([]byte{}, src...), "{}"...)
	}
	// Decoded the way dockerd reads it (into interface values), not only
	// checked for syntax: a number past float64's range is valid JSON that
	// dockerd refuses at start, so writing beside it would stop the engine.
	var v any
	if err := json.Unmarshal(src, &v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(src, se.Offset)
			return nil, &SyntaxError{Line: line, Column: col, Offset: se.Offset, Msg: se.Error()}
		}
		return nil, fmt.Errorf("dockerd could not read this file either, fix it first: %w", err)
	}
	d.src = src
	p := skipWS(src, 0)
	if src[p] != '{' {
		return nil, errors.New("top level of the document is not a JSON object")
	}
	d.open = p
	p = skipWS(src, p+1)
	seen := map[string]bool{}
	for src[p] != '}' {
		var m jsonMember
		m.keyStart = p
		m.keyEnd = scanValue(src, p)
		if err := json.Unmarshal(src[m.keyStart:m.keyEnd], &m.key); err != nil {
			return nil, fmt.Errorf("decode key at byte %d: %w", p, err)
		}
		p = skipWS(src, m.keyEnd) + 1 // past ':'
		m.valStart = skipWS(src, p)
		m.valEnd = scanValue(src, m.valStart)
		if seen[m.key] && (m.key == keyMirrors || m.key == keyInsecure) {
			return nil, fmt.Errorf("key %q appears twice", m.key)
		}
		seen[m.key] = true
		d.members = append(d.members, m)
		p = skipWS(src, m.valEnd)
		if src[p] == ',' {
			p = skipWS(src, p+1)
		}
	}
	d.close = p
	return d, nil
}

// bytes returns the document with its BOM restored.
func (d *jsonDoc) bytes() []byte {
	if !d.bom {
		return d.src
	}
	return append(append([]byte{}, utf8BOM...), d.src...)
}

func (d *jsonDoc) member(key string) (jsonMember, bool) {
	for _, m := range d.members {
		if m.key == key {
			return m, true
		}
	}
	return jsonMember{}, false
}

// newline returns the line ending the document uses.
func (d *jsonDoc) newline() string {
	if bytes.Contains(d.src, []byte("\r\n")) {
		return "\r\n"
	}
	return "\n"
}

// splice returns a new document with src[start:end] replaced by repl.
func (d *jsonDoc) splice(start, end int, repl string) (*jsonDoc, error) {
	out := make([]byte, 0, len(d.src)+len(repl))
	out = append(out, d.src[:start]...)
	out = append(out, repl...)
	out = append(out, d.src[end:]...)
	if d.bom {
		out = append(append([]byte{}, utf8BOM...), out...)
	}
	return parseJSONObject(out)
}

// addMember appends "key": rawValue to the object, copying the separator and
// indentation style of the existing members.
func (d *jsonDoc) addMember(key, rawValue string) (*jsonDoc, error) {
	k, _ := json.Marshal(key)
	if len(d.members) == 0 {
		nl := d.newline()
		return d.splice(d.open+1, d.close, nl+"  "+string(k)+": "+rawValue+nl)
	}
	first := d.members[0]
	colon := string(d.src[first.keyEnd:first.valStart])
	var sep string
	if len(d.members) >= 2 {
		second := d.members[1]
		sep = string(d.src[skipWS(d.src, first.valEnd)+1 : second.keyStart])
	} else {
		sep = string(d.src[d.open+1 : first.keyStart])
		if !strings.Contains(sep, "\n") {
			// {"a": 1} → {"a": 1, "b": 2}; {"a":1} → {"a":1,"b":2}
			sep = ""
			if strings.Contains(colon, " ") {
				sep = " "
			}
		}
	}
	last := d.members[len(d.members)-1]
	return d.splice(last.valEnd, last.valEnd, ","+sep+string(k)+colon+rawValue)
}

// arrayElems returns the elements of the array value of m, or an error if the
// value is not an array.
func (d *jsonDoc) arrayElems(m jsonMember) ([]jsonElem, error) {
	src := d.src
	if src[m.valStart] != '[' {
		return nil, fmt.Errorf("value of %q is not a list", m.key)
	}
	var elems []jsonElem
	p := skipWS(src, m.valStart+1)
	for src[p] != ']' {
		e := jsonElem{start: p, end: scanValue(src, p)}
		elems = append(elems, e)
		p = skipWS(src, e.end)
		if src[p] == ',' {
			p = skipWS(src, p+1)
		}
	}
	return elems, nil
}

// stringElems decodes every element of the array value of m as a string.
func (d *jsonDoc) stringElems(m jsonMember) ([]jsonElem, []string, error) {
	elems, err := d.arrayElems(m)
	if err != nil {
		return nil, nil, err
	}
	vals := make([]string, len(elems))
	for i, e := range elems {
		if err := json.Unmarshal(d.src[e.start:e.end], &vals[i]); err != nil {
			return nil, nil, fmt.Errorf("element %d of %q is not a string", i, m.key)
		}
	}
	return elems, vals, nil
}

// insertElem adds rawValue to the array value of m, first or last, copying
// the separator the array already uses.
func (d *jsonDoc) insertElem(m jsonMember, rawValue string, first bool) (*jsonDoc, error) {
	elems, err := d.arrayElems(m)
	if err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return d.splice(m.valStart+1, m.valStart+1, rawValue)
	}
	var sep string
	switch {
	case len(elems) >= 2:
		sep = string(d.src[elems[0].end:elems[1].start])
	case bytes.ContainsAny(d.src[m.valStart+1:elems[0].start], "\n"):
		sep = "," + string(d.src[m.valStart+1:elems[0].start])
	default:
		sep = ", "
	}
	if first {
		return d.splice(elems[0].start, elems[0].start, rawValue+sep)
	}
	last := elems[len(elems)-1]
	return d.splice(last.end, last.end, sep+rawValue)
}

// removeElem removes element i of the array value of m together with one
// separator, the exact inverse of insertElem.
func (d *jsonDoc) removeElem(m jsonMember, i int) (*jsonDoc, error) {
	elems, err := d.arrayElems(m)
	if err != nil {
		return nil, err
	}
	switch {
	case len(elems) == 1:
		return d.splice(elems[0].start, elems[0].end, "")
	case i < len(elems)-1:
		return d.splice(elems[i].start, elems[i+1].start, "")
	default:
		return d.splice(elems[i-1].end, elems[i].end, "")
	}
}

// skipWS returns the offset of the first non-whitespace byte at or after p.
func skipWS(src []byte, p int) int {
	for p < len(src) {
		switch src[p] {
		case ' ', '\t', '\n', '\r':
			p++
		default:
			return p
		}
	}
	return p
}

// scanValue returns the offset just past the JSON value starting at p. The
// document has already been validated, so only the shape is tracked.
func scanValue(src []byte, p int) int {
	switch src[p] {
	case '"':
		for i := p + 1; i < len(src); i++ {
			switch src[i] {
			case '\\':
				i++
			case '"':
				return i + 1
			}
		}
		return len(src)
	case '{', '[':
		depth := 0
		for i := p; i < len(src); i++ {
			switch src[i] {
			case '"':
				i = scanValue(src, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(src)
	default: // number, true, false, null
		i := p
		for i < len(src) && !bytes.ContainsRune([]byte(" \t\r\n,}]"), rune(src[i])) {
			i++
		}
		return i
	}
}

// position turns a byte offset into a 1-based line and column.
func position(src []byte, off int64) (line, col int) {
	if off > int64(len(src)) {
		off = int64(len(src))
	}
	before := src[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}
