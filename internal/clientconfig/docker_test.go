package clientconfig

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustMirror(t testing.TB, s string) Mirror {
	t.Helper()
	m, err := ParseMirror(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDockerMatrix runs enable then disable over the daemon.json shapes found
// in the field and checks both outputs byte for byte.
func TestDockerMatrix(t *testing.T) {
	const (
		httpM  = "http://192.0.2.1:5000"
		httpsM = "https://mirror.example.com"
	)
	tests := []struct {
		name     string
		mirror   string
		position Position
		in       string
		enabled  string
		disabled string // "" means: equal to in
		nilInput bool
	}{
		{
			name: "missing file", mirror: httpM, nilInput: true,
			enabled:  "{\n  \"registry-mirrors\": [\"http://192.0.2.1:5000\"],\n  \"insecure-registries\": [\"192.0.2.1:5000\"]\n}\n",
			disabled: "{\n  \"registry-mirrors\": [],\n  \"insecure-registries\": []\n}\n",
		},
		{
			name: "empty file", mirror: httpsM, in: "",
			enabled:  "{\n  \"registry-mirrors\": [\"https://mirror.example.com\"]\n}\n",
			disabled: "{\n  \"registry-mirrors\": []\n}\n",
		},
		{
			name: "whitespace only", mirror: httpsM, in: "\n\n",
			enabled:  "\n\n{\n  \"registry-mirrors\": [\"https://mirror.example.com\"]\n}",
			disabled: "\n\n{\n  \"registry-mirrors\": []\n}",
		},
		{
			name: "empty object", mirror: httpsM, in: "{}",
			enabled:  "{\n  \"registry-mirrors\": [\"https://mirror.example.com\"]\n}",
			disabled: "{\n  \"registry-mirrors\": []\n}",
		},
		{
			name: "other keys, tab indent", mirror: httpM,
			in:       "{\n\t\"log-driver\": \"json-file\",\n\t\"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"}\n}\n",
			enabled:  "{\n\t\"log-driver\": \"json-file\",\n\t\"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"},\n\t\"registry-mirrors\": [\"http://192.0.2.1:5000\"],\n\t\"insecure-registries\": [\"192.0.2.1:5000\"]\n}\n",
			disabled: "{\n\t\"log-driver\": \"json-file\",\n\t\"log-opts\": {\"max-size\": \"10m\", \"max-file\": \"3\"},\n\t\"registry-mirrors\": [],\n\t\"insecure-registries\": []\n}\n",
		},
		{
			name: "compact one line", mirror: httpsM,
			in:       `{"debug":true,"storage-driver":"vfs","default-ulimits":{"nofile":{"Name":"nofile","Hard":64000,"Soft":64000}}}`,
			enabled:  `{"debug":true,"storage-driver":"vfs","default-ulimits":{"nofile":{"Name":"nofile","Hard":64000,"Soft":64000}},"registry-mirrors":["https://mirror.example.com"]}`,
			disabled: `{"debug":true,"storage-driver":"vfs","default-ulimits":{"nofile":{"Name":"nofile","Hard":64000,"Soft":64000}},"registry-mirrors":[]}`,
		},
		{
			name: "existing mirror, first", mirror: httpsM,
			in:      "{\n    \"registry-mirrors\": [\"https://mirror.gcr.io\"],\n    \"max-concurrent-downloads\": 10\n}\n",
			enabled: "{\n    \"registry-mirrors\": [\"https://mirror.example.com\", \"https://mirror.gcr.io\"],\n    \"max-concurrent-downloads\": 10\n}\n",
		},
		{
			name: "existing mirror, last", mirror: httpsM, position: Last,
			in:      "{\n    \"registry-mirrors\": [\"https://mirror.gcr.io\"],\n    \"max-concurrent-downloads\": 10\n}\n",
			enabled: "{\n    \"registry-mirrors\": [\"https://mirror.gcr.io\", \"https://mirror.example.com\"],\n    \"max-concurrent-downloads\": 10\n}\n",
		},
		{
			name: "multi-line lists", mirror: httpM,
			in:      "{\n  \"registry-mirrors\": [\n    \"https://a.example\",\n    \"https://b.example\"\n  ],\n  \"insecure-registries\": [\n    \"10.0.0.0/8\"\n  ]\n}\n",
			enabled: "{\n  \"registry-mirrors\": [\n    \"http://192.0.2.1:5000\",\n    \"https://a.example\",\n    \"https://b.example\"\n  ],\n  \"insecure-registries\": [\n    \"10.0.0.0/8\",\n    \"192.0.2.1:5000\"\n  ]\n}\n",
		},
		{
			name: "ours already there with trailing slash", mirror: httpM,
			in:      "{\"registry-mirrors\": [\"http://192.0.2.1:5000/\"], \"insecure-registries\": [\"192.0.2.1:5000\"]}\n",
			enabled: "{\"registry-mirrors\": [\"http://192.0.2.1:5000/\"], \"insecure-registries\": [\"192.0.2.1:5000\"]}\n",
		},
		{
			name: "operator's insecure entry stays", mirror: httpM,
			in:       "{\"insecure-registries\": [\"192.0.2.1:5000\"]}",
			enabled:  "{\"insecure-registries\": [\"192.0.2.1:5000\"], \"registry-mirrors\": [\"http://192.0.2.1:5000\"]}",
			disabled: "{\"insecure-registries\": [\"192.0.2.1:5000\"], \"registry-mirrors\": []}",
		},
		{
			name: "emptied lists from an earlier disable", mirror: httpM,
			in:      "{\n  \"registry-mirrors\": [],\n  \"insecure-registries\": [ ]\n}\n",
			enabled: "{\n  \"registry-mirrors\": [\"http://192.0.2.1:5000\"],\n  \"insecure-registries\": [\"192.0.2.1:5000\" ]\n}\n",
		},
		{
			name: "nested lookalike keys and tricky strings", mirror: httpsM,
			in:       "{\"features\": {\"registry-mirrors\": [\"x\"]}, \"label\": \"a \\\"}]{[\\\\\", \"n\": -1.5e+3}\n",
			enabled:  "{\"features\": {\"registry-mirrors\": [\"x\"]}, \"label\": \"a \\\"}]{[\\\\\", \"n\": -1.5e+3, \"registry-mirrors\": [\"https://mirror.example.com\"]}\n",
			disabled: "{\"features\": {\"registry-mirrors\": [\"x\"]}, \"label\": \"a \\\"}]{[\\\\\", \"n\": -1.5e+3, \"registry-mirrors\": []}\n",
		},
		{
			name: "UTF-8 BOM", mirror: httpsM,
			in:       "\ufeff{\n  \"debug\": true\n}\n",
			enabled:  "\ufeff{\n  \"debug\": true,\n  \"registry-mirrors\": [\"https://mirror.example.com\"]\n}\n",
			disabled: "\ufeff{\n  \"debug\": true,\n  \"registry-mirrors\": []\n}\n",
		},
		{
			name: "CRLF line ends", mirror: httpsM,
			in:       "{\r\n  \"debug\": true,\r\n  \"registry-mirrors\": [\r\n    \"https://a.example\"\r\n  ]\r\n}\r\n",
			enabled:  "{\r\n  \"debug\": true,\r\n  \"registry-mirrors\": [\r\n    \"https://mirror.example.com\",\r\n    \"https://a.example\"\r\n  ]\r\n}\r\n",
			disabled: "",
		},
		{
			name: "CRLF empty object", mirror: httpsM,
			in:       "{\r\n}\r\n",
			enabled:  "{\r\n  \"registry-mirrors\": [\"https://mirror.example.com\"]\r\n}\r\n",
			disabled: "{\r\n  \"registry-mirrors\": []\r\n}\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var in []byte
			if !tt.nilInput {
				in = []byte(tt.in)
			}
			m := mustMirror(t, tt.mirror)
			got, change, err := DockerEnable(in, DockerOptions{Mirror: m, Position: tt.position})
			if err != nil {
				t.Fatalf("enable: %v", err)
			}
			if string(got) != tt.enabled {
				t.Errorf("enable:\n got %q\nwant %q", got, tt.enabled)
			}
			if !json.Valid(trimBOM(got)) {
				t.Errorf("enable output is not valid JSON")
			}
			again, change2, err := DockerEnable(got, DockerOptions{Mirror: m, Position: tt.position})
			if err != nil || string(again) != string(got) || change2.AddedMirror || change2.AddedInsecure != "" {
				t.Errorf("enable is not idempotent: %q %+v %v", again, change2, err)
			}
			back, err := DockerDisable(got, change)
			if err != nil {
				t.Fatalf("disable: %v", err)
			}
			want := tt.disabled
			if want == "" {
				want = tt.in
			}
			if string(back) != want {
				t.Errorf("disable:\n got %q\nwant %q", back, want)
			}
		})
	}
}

func trimBOM(b []byte) []byte { return []byte(strings.TrimPrefix(string(b), "\ufeff")) }

func TestDockerRefusesBadInput(t *testing.T) {
	m := mustMirror(t, "http://192.0.2.1")
	tests := []struct {
		name, in, want string
	}{
		{"trailing comma", "{\n  \"debug\": true,\n}\n", "line 3, column 1"},
		{"unterminated", "{\"debug\": tru", "invalid JSON"},
		{"not an object", "[1, 2]", "not a JSON object"},
		{"mirrors not a list", `{"registry-mirrors": "http://x"}`, "not a list"},
		{"mirrors null", `{"registry-mirrors": null}`, "not a list"},
		{"non-string mirror", `{"registry-mirrors": [1]}`, "not a string"},
		{"duplicate key", `{"registry-mirrors": [], "registry-mirrors": []}`, "appears twice"},
		{"two documents", `{} {}`, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := DockerEnable([]byte(tt.in), DockerOptions{Mirror: m})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
		})
	}
	var se *SyntaxError
	_, _, err := DockerEnable([]byte("{\n  \"a\": 1,,\n}"), DockerOptions{Mirror: m})
	if !errors.As(err, &se) || se.Line != 2 {
		t.Fatalf("want *SyntaxError on line 2, got %#v", err)
	}
}

func TestParseMirror(t *testing.T) {
	tests := []struct {
		in      string
		want    Mirror
		wantErr bool
	}{
		{in: "http://192.0.2.1", want: Mirror{URL: "http://192.0.2.1", Host: "192.0.2.1", Insecure: true}},
		{in: "http://192.0.2.1:5000/", want: Mirror{URL: "http://192.0.2.1:5000", Host: "192.0.2.1:5000", Insecure: true}},
		{in: "https://Mirror.Example.com", want: Mirror{URL: "https://mirror.example.com", Host: "mirror.example.com"}},
		{in: "http://[::1]:5000", want: Mirror{URL: "http://[::1]:5000", Host: "[::1]:5000", Insecure: true}},
		{in: "192.0.2.1:5000", wantErr: true},
		{in: "ftp://x", wantErr: true},
		{in: "http://", wantErr: true},
		{in: "http://x:0", wantErr: true},
		{in: "http://x:99999", wantErr: true},
		{in: "http://x:", wantErr: true},
		{in: "http://u:p@x", wantErr: true},
		{in: "http://x/v2", wantErr: true},
		{in: "http://x?a=b", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseMirror(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseMirror(%q) = %+v, %v", tt.in, got, err)
		}
	}
}

func TestDockerStateMerge(t *testing.T) {
	var st DockerState
	st = st.Put(DockerChange{Mirror: "http://a:1", AddedMirror: true, AddedInsecure: "a:1"})
	st = st.Put(DockerChange{Mirror: "http://a:1/"}) // second enable added nothing
	got, ok := st.Get("http://a:1")
	if !ok || !got.AddedMirror || got.AddedInsecure != "a:1" {
		t.Fatalf("merge lost the first record: %+v", got)
	}
	parsed, err := ParseDockerState(st.Bytes())
	if err != nil || !reflect.DeepEqual(parsed, st) {
		t.Fatalf("round trip: %+v %v", parsed, err)
	}
	if st = st.Delete("http://a:1"); len(st.Changes) != 0 {
		t.Fatalf("delete: %+v", st)
	}
}

// FuzzDockerEditor checks the editor's invariants for any JSON object: the
// output is valid JSON, every other key keeps its value, and disable undoes
// enable apart from the emptied lists.
func FuzzDockerEditor(f *testing.F) {
	for _, s := range []string{
		"", "{}", "{\n}\n", `{"a":1}`, "{\n  \"a\": [1, {\"b\": null}]\n}\n",
		`{"registry-mirrors":["https://x"],"insecure-registries":["10.0.0.0/8"]}`,
		"{\r\n\t\"registry-mirrors\": [\r\n\t\t\"http://192.0.2.1:5000/\"\r\n\t]\r\n}",
		"\ufeff{\"debug\":true}", `{"registry-mirrors":[],"insecure-registries":[]}`,
		`{"x":"\u00e9\"\\","y":-0.1e-7,"z":[[],{}]}`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, insecure bool) {
		mirror := "https://192.0.2.1:5000"
		if insecure {
			mirror = "http://192.0.2.1:5000"
		}
		m := mustMirror(t, mirror)
		out, change, err := DockerEnable(in, DockerOptions{Mirror: m})
		if err != nil {
			return // invalid input is refused, never written
		}
		var before, after map[string]any
		if len(strings.TrimSpace(string(trimBOM(in)))) == 0 {
			before = map[string]any{}
		} else if err := json.Unmarshal(trimBOM(in), &before); err != nil {
			t.Fatalf("enable accepted input encoding/json refuses: %v", err)
		}
		if err := json.Unmarshal(trimBOM(out), &after); err != nil {
			t.Fatalf("enable output is invalid JSON: %v\n%q", err, out)
		}
		for k, v := range before {
			if k == keyMirrors || k == keyInsecure {
				continue
			}
			if !reflect.DeepEqual(after[k], v) {
				t.Fatalf("key %q changed: %v -> %v", k, v, after[k])
			}
		}
		mirrors, _ := after[keyMirrors].([]any)
		if !containsMirror(mirrors, m.URL) {
			t.Fatalf("mirror missing after enable: %q", out)
		}
		back, err := DockerDisable(out, change)
		if err != nil {
			t.Fatalf("disable: %v", err)
		}
		var undone map[string]any
		if err := json.Unmarshal(trimBOM(back), &undone); err != nil {
			t.Fatalf("disable output is invalid JSON: %v\n%q", err, back)
		}
		want := map[string]any{}
		for k, v := range before {
			want[k] = v
		}
		if _, ok := want[keyMirrors]; !ok {
			want[keyMirrors] = []any{}
		}
		if _, ok := want[keyInsecure]; !ok && insecure {
			want[keyInsecure] = []any{}
		}
		if !reflect.DeepEqual(undone, want) {
			t.Fatalf("disable(enable(x)) != x:\n in  %q\n out %q\n back %q", in, out, back)
		}
		_, hadM := before[keyMirrors]
		_, hadI := before[keyInsecure]
		if hadM && (hadI || !insecure) && string(back) != string(in) {
			t.Fatalf("round trip not byte-equal:\n in   %q\n back %q", in, back)
		}
	})
}

func containsMirror(list []any, m string) bool {
	for _, v := range list {
		if s, ok := v.(string); ok && sameMirror(s, m) {
			return true
		}
	}
	return false
}
