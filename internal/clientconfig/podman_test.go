package clientconfig

import (
	"slices"
	"testing"
)

func TestPodmanPrefixes(t *testing.T) {
	t.Parallel()
	src := []byte(`unqualified-search-registries = ["docker.io"]

[[registry]]
prefix = "docker.io"
blocked = true

[[registry]]
location = "quay.io"

[[registry]]
prefix = "*.example.com"
location = "mirror.example.com"
`)
	got, err := PodmanPrefixes(src)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"docker.io", "quay.io", "*.example.com"}; !slices.Equal(got, want) {
		t.Errorf("PodmanPrefixes = %q, want %q", got, want)
	}
	if _, err := PodmanPrefixes([]byte("[[registry]\n")); err == nil {
		t.Error("invalid TOML accepted")
	}
}

func TestPodmanMirrorURLs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		mirror string
		regs   []string
	}{
		{"http://192.0.2.1:5000", []string{"docker.io", "ghcr.io"}},
		{"https://mirror.example.com", nil},
	} {
		m, err := ParseMirror(tt.mirror)
		if err != nil {
			t.Fatal(err)
		}
		got, err := PodmanMirrorURLs(PodmanDropIn(PodmanOptions{Mirror: m, Registries: tt.regs}))
		if err != nil || !slices.Equal(got, []string{m.URL}) {
			t.Errorf("%s: PodmanMirrorURLs = %q, %v", tt.mirror, got, err)
		}
	}
}
