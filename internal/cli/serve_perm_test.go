package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestServeRootOwnedVolume: serve as the image's user (65532) on a data
// directory root owns, as an old registry volume is, stops with the
// permission error and says to give the directory to user 65532.
func TestServeRootOwnedVolume(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run serve as user 65532")
		}
		t.Skip("needs root to run serve as user 65532")
	}
	dir, err := os.MkdirTemp("", "regcache-volume-") // t.TempDir's parent is 0700: user 65532 could not enter
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // others may enter, as a volume's parents allow
		t.Fatal(err)
	}
	// The test binary, where user 65532 may run it.
	exe := filepath.Join(dir, "regcache.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	src.Close()
	if cerr := dst.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	volume := filepath.Join(dir, "registry") // root's, 0755: readable, not writable by 65532
	if err := os.Mkdir(volume, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = []string{"REGCACHETEST_CHILD=serve", "REGCACHE_DATA=" + volume, "REGCACHE_ADDR=127.0.0.1:0", "REGCACHE_ADMIN_ADDR=",
		"REGCACHE_UPSTREAM_URL=http://127.0.0.1:9", "PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var ee *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &ee) {
		t.Fatalf("serve as user 65532 on a directory it cannot write: %v\n%s", err, &stderr)
	}
	out := stderr.String()
	for _, want := range []string{"permission denied", "the data directory " + volume + " is not writable by this process (uid 65532",
		"runs as user 65532", "chown -R 65532:65532"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
}
