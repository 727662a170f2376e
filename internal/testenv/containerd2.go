package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Containerd2Cache is where .ci/build-containerd keeps containerd 2.x's
// daemon and ctr (containerd2, ctr2), built once per machine from the Go
// module proxy; Debian's containerd 1.6 stays at /usr/bin.
const Containerd2Cache = "/var/cache/regcache-ci/bin"

// Containerd2Options configures StartContainerd2: the transfer service's
// parallel layer fetch (containerd 2.1+), off when FetchBuffer is 0.
type Containerd2Options struct {
	// FetchBuffer is concurrent_layer_fetch_buffer: the chunk each range
	// request of one layer fetches.
	FetchBuffer int64
	// MaxDownloads is max_concurrent_downloads: ranges (and layers) in
	// flight.
	MaxDownloads int
}

// StartContainerd2 starts containerd 2.x from Containerd2Cache with its own
// root, state and sockets (no CRI), and waits until it answers. Without
// the binaries the test is skipped, or fails with CI=true.
func StartContainerd2(t testing.TB, opts Containerd2Options) *Containerd {
	t.Helper()
	requireRoot(t)
	bin, ctr := filepath.Join(Containerd2Cache, "containerd2"), filepath.Join(Containerd2Cache, "ctr2")
	for _, p := range []string{bin, ctr} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("containerd 2.x not found (%v): run .ci/build-containerd", err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg + "; skipping")
		}
	}
	dir := shortTempDir(t, "rc2")
	c := &Containerd{
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "config.toml"),
		HostsDir:   filepath.Join(dir, "certs.d"),
		Socket:     filepath.Join(dir, "c.sock"),
		LogFile:    filepath.Join(dir, "containerd.log"),
		Namespace:  "regcache-test",
		ctr:        ctr,
	}
	// Layers are unpacked with the native snapshotter (no overlay mounts),
	// as Pull asks.
	transfer := "\n[plugins.'io.containerd.transfer.v1.local']\n"
	if opts.FetchBuffer > 0 {
		transfer += fmt.Sprintf("  concurrent_layer_fetch_buffer = %d\n  max_concurrent_downloads = %d\n", opts.FetchBuffer, max(opts.MaxDownloads, 1))
	}
	transfer += fmt.Sprintf("\n[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]\n  platform = %q\n  snapshotter = \"native\"\n", "linux/"+runtime.GOARCH)
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]

[grpc]
  address = %[3]q

[ttrpc]
  address = "%[3]s.ttrpc"

[debug]
  address = ""
  level = "debug"

[metrics]
  address = ""

[plugins.'io.containerd.internal.v1.opt']
  path = %[4]q
%[5]s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.Socket, filepath.Join(dir, "opt"), transfer)
	c.launch(t, bin, cfg)
	return c
}
