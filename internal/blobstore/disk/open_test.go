package disk

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
)

// openSyscallsHelper is TestOpenSyscalls' child: it opens one committed
// blob opens times and closes it, under strace.
const openSyscallsHelper = "REGCACHE_DISK_OPEN_HELPER"

const opens = 200

func TestMain(m *testing.M) {
	if dir := os.Getenv(openSyscallsHelper); dir != "" {
		s, err := New(dir)
		if err != nil {
			panic(err)
		}
		d := digest.FromString("blob")
		for range opens {
			b, err := s.Open(context.Background(), d)
			if err != nil {
				panic(err)
			}
			b.Close()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestOpenSyscalls: opening a committed blob costs openat(2), one
// fcntl(2), fstat(2) and close(2), not os.Open's four fcntl(2) and failing
// epoll_ctl(2) for the netpoller (issue 28), counted by strace over 200
// opens.
func TestOpenSyscalls(t *testing.T) {
	strace := testenv.RequireTool(t, "strace")
	dir := t.TempDir()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(t.Context(), digest.FromString("blob"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("blob")); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "strace.txt")
	cmd := exec.Command(strace, "-f", "-c", "-o", out, "-e", "trace=openat,fcntl,epoll_ctl,fstat,newfstatat", os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), openSyscallsHelper+"="+dir)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace: %v\n%s", err, msg)
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() { // "% time seconds usecs/call calls [errors] syscall"
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		if n, err := strconv.Atoi(f[3]); err == nil {
			calls[f[len(f)-1]] = n
		}
	}
	t.Logf("%d opens: %v", opens, calls)
	if calls["openat"] < opens {
		t.Fatalf("strace saw %d openat for %d opens:\n%s", calls["openat"], opens, text)
	}
	// os.NewFile's one fcntl(2) per open (is the descriptor
	// non-blocking?), and a few for the process's own start-up.
	if n := calls["fcntl"] + calls["epoll_ctl"]; n > opens*3/2 {
		t.Errorf("%d fcntl and epoll_ctl for %d opens, want about one per open:\n%s", n, opens, text)
	}
}
