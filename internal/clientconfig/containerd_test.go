package clientconfig

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/<name>, rewriting it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file: %v (run with -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n%s", name, Diff(want, got, DiffOptions{OldName: "want", NewName: "got"}))
	}
}

func TestContainerdGolden(t *testing.T) {
	tests := []struct {
		name     string
		input    string // file in testdata/containerd, "" for a missing file
		registry string
		mirror   string
		position Position
	}{
		{name: "new-docker.io", registry: "docker.io", mirror: "http://192.0.2.1:5000"},
		{name: "new-ghcr.io-https", registry: "ghcr.io", mirror: "https://mirror.example.com"},
		{name: "new-default", registry: "_default", mirror: "http://192.0.2.1:5000"},
		{name: "existing-first", input: "existing.toml", registry: "docker.io", mirror: "http://192.0.2.1:5000"},
		{name: "existing-last", input: "existing.toml", registry: "docker.io", mirror: "http://192.0.2.1:5000", position: Last},
		{name: "server-only", input: "server-only.toml", registry: "docker.io", mirror: "http://192.0.2.1:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in []byte
			if tt.input != "" {
				var err error
				if in, err = os.ReadFile(filepath.Join("testdata/containerd", tt.input)); err != nil {
					t.Fatal(err)
				}
			}
			m := mustMirror(t, tt.mirror)
			got, err := ContainerdEnable(in, ContainerdOptions{Mirror: m, Registry: tt.registry, Position: tt.position})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "containerd/"+tt.name+".golden.toml", got)
			again, err := ContainerdEnable(got, ContainerdOptions{Mirror: m, Registry: tt.registry, Position: tt.position})
			if err != nil || string(again) != string(got) {
				t.Errorf("enable is not idempotent: %v\n%s", err, Diff(got, again, DiffOptions{}))
			}
			if present, ours := ContainerdHasMirror(got, m); !present || !ours {
				t.Errorf("ContainerdHasMirror = %v, %v", present, ours)
			}
			back, remove, err := ContainerdDisable(got, tt.registry, m)
			if err != nil {
				t.Fatal(err)
			}
			if remove != (tt.input == "") {
				t.Errorf("remove = %v for input %q", remove, tt.input)
			}
			if tt.input != "" && string(back) != string(in) {
				t.Errorf("disable did not restore the input:\n%s", Diff(in, back, DiffOptions{OldName: "input", NewName: "disabled"}))
			}
		})
	}
}

func TestContainerdForeignEntry(t *testing.T) {
	in := []byte("server = \"https://registry-1.docker.io\"\n\n[host.\"http://192.0.2.1:5000\"]\n  capabilities = [\"pull\"]\n")
	m := mustMirror(t, "http://192.0.2.1:5000")
	if _, err := ContainerdEnable(in, ContainerdOptions{Mirror: m, Registry: "docker.io"}); !errors.Is(err, ErrForeignEntry) {
		t.Fatalf("enable: want ErrForeignEntry, got %v", err)
	}
	if out, _, err := ContainerdDisable(in, "docker.io", m); !errors.Is(err, ErrForeignEntry) || string(out) != string(in) {
		t.Fatalf("disable: want ErrForeignEntry and no change, got %v", err)
	}
	if _, err := ContainerdEnable([]byte("server = \n"), ContainerdOptions{Mirror: m, Registry: "docker.io"}); err == nil {
		t.Fatal("invalid TOML accepted")
	}
}

func TestContainerdConfigPath(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"v2", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n", "/etc/containerd/certs.d"},
		{"v3", "version = 3\n[plugins.'io.containerd.cri.v1.images'.registry]\nconfig_path = '/x'\n", "/x"},
		{"v1", "[plugins.cri.registry]\nconfig_path = \"/y\"\n", "/y"},
		{"unset", "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors]\n", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		got, err := ContainerdConfigPath([]byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestPodmanGolden(t *testing.T) {
	tests := []struct {
		name       string
		mirror     string
		registries []string
	}{
		{"http-docker.io", "http://192.0.2.1:5000", nil},
		{"https-several", "https://mirror.example.com", []string{"docker.io", "ghcr.io", "quay.io"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PodmanDropIn(PodmanOptions{Mirror: mustMirror(t, tt.mirror), Registries: tt.registries})
			golden(t, "podman/"+tt.name+".golden.conf", got)
			if !PodmanOwned(got) {
				t.Error("drop-in not recognised as ours")
			}
			if _, err := PodmanMirrors(got); err != nil {
				t.Error(err)
			}
		})
	}
	if err := PodmanCheckMain([]byte("[registries.search]\nregistries = ['docker.io']\n")); err == nil {
		t.Error("v1 registries.conf not flagged")
	}
	if err := PodmanCheckMain([]byte("unqualified-search-registries = ['docker.io']\n")); err != nil {
		t.Error(err)
	}
}
