package app

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/oci"
	"github.com/regcache/regcache/internal/testenv"
)

// BenchmarkAppManifestHit loads warm manifest hits on the whole app (access
// middleware, metrics, log level warn) with wrk, for a server-only profile:
//
//	go test -run '^$' -bench BenchmarkAppManifestHit -benchtime 1x -cpuprofile /tmp/cpu.out ./internal/app
func BenchmarkAppManifestHit(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatal("wrk not found (apt-get install wrk)")
	}
	hub := testenv.NewHub(b)
	imgs := hub.Seed(b)
	m := startMirrorB(b, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_FRESHNESS": "10m"})
	img := imgs.Single
	url := "http://" + m.Host + "/v2/" + img.Repo + "/manifests/" + img.Tag
	accept := "Accept: " + strings.Join(oci.ManifestMediaTypes, ", ")
	if out, err := exec.Command("curl", "-sf", "-o", "/dev/null", "-H", accept, url).CombinedOutput(); err != nil {
		b.Fatalf("warm-up: %v %s", err, out)
	}
	b.ResetTimer()
	out, err := exec.Command(wrk, "-t1", "-c64", "-d5s", "--latency", "-H", accept, url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v\n%s", err, out)
	}
	b.Log(string(out))
}
