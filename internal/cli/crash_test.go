package cli

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/testenv"
)

// TestMain lets the test binary act as `regcache serve` when started by
// the crash test, so the child is the real program without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("REGCACHETEST_CHILD") == "cli" { // the real command line: regcache <args>
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, strings.Fields(os.Getenv("REGCACHETEST_ARGS")), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if os.Getenv("REGCACHETEST_CHILD") == "serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		root := NewRoot()
		root.SetArgs([]string{"serve"})
		err := root.ExecuteContext(ctx)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "regcache:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type child struct {
	cmd  *exec.Cmd
	addr string
	log  *os.File
}

func startChild(t *testing.T, env []string, logPath string) *child {
	t.Helper()
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "REGCACHETEST_CHILD=serve", "REGCACHE_ADDR="+addr)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, addr: addr, log: logf}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return c
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			b, _ := os.ReadFile(logPath)
			t.Fatalf("regcache did not start: %v\n%s", err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	c.log.Close()
}

func (c *child) stop(t *testing.T) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("regcache exited with %v after SIGTERM", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("regcache did not stop within 30s of SIGTERM")
		c.kill()
	}
	c.log.Close()
}

// pullAll fetches the manifest and every blob of img, checking bytes; it
// returns the first error (expected while the server is being killed).
func pullAll(ctx context.Context, addr string, img testenv.Image) error {
	client := &http.Client{}
	get := func(path string, want digest.Digest) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.Copy(h, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		if want != "" && fmt.Sprintf("sha256:%x", h.Sum(nil)) != string(want) {
			return fmt.Errorf("GET %s: WRONG BYTES delivered as complete", path)
		}
		return nil
	}
	if err := get("/v2/"+img.Repo+"/manifests/"+img.Tag, img.Digest); err != nil {
		return err
	}
	for _, b := range img.Blobs() {
		if err := get("/v2/"+img.Repo+"/blobs/"+string(b.Digest), b.Digest); err != nil {
			return err
		}
	}
	return nil
}

// verifyStore hashes every committed file: a name is a promise of content.
func verifyStore(t *testing.T, data string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(filepath.Join(data, "blobs"), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		io.Copy(h, f)
		f.Close()
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != e.Name() {
			t.Errorf("committed file %s holds content %s", e.Name(), got)
		}
		n++
		return nil
	})
	return n
}

// TestKillDuringFills starts regcache as a process, kills it with SIGKILL
// at random moments of large, throttled fills (20 times), restarts it, and
// checks after every kill that each committed file is what its name says,
// and at the end that every pull is right and index and store agree.
func TestKillDuringFills(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop is long; run without -short")
	}
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithTenLayerImage(100<<20))
	hub.SetFault(testenv.AllBlobs, testenv.Throttle(12<<20))
	killDuringFills(t, hub, *imgs.TenLayer, 20)
}

// TestKillDuringSegmentedFills is TestKillDuringFills with a 48 MiB layer,
// filled over 4 range requests at once (upstreams[].fill_connections'
// default), 8 kills: no committed file holds anything but its digest's
// bytes, and the pulls after the last restart are right.
func TestKillDuringSegmentedFills(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop is long; run without -short")
	}
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(48<<20))
	hub.SetFault(testenv.AllBlobs, testenv.Throttle(8<<20))
	killDuringFills(t, hub, *imgs.Big, 8)
}

// killDuringFills runs regcache as a process in front of hub and kills it
// (SIGKILL) kills times at random moments of three clients' pulls of img,
// checking the store after each kill and the pulls after a last restart.
func killDuringFills(t *testing.T, hub *testenv.Hub, img testenv.Image, kills int) {
	data := t.TempDir()
	logPath := filepath.Join(t.TempDir(), "regcache.log")
	env := []string{"REGCACHE_DATA=" + data, "REGCACHE_UPSTREAM_URL=" + hub.URL, "REGCACHE_UPSTREAM_NAME=docker.io",
		"REGCACHE_ADMIN_ADDR=", "REGCACHE_LOG_LEVEL=warn", "REGCACHE_PREFETCH=true"}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("random seed %d", seed)
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("regcache log:\n%s", b)
		}
	}()
	for i := range kills {
		c := startChild(t, env, logPath)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var wrong sync.Map
		for range 3 {
			wg.Go(func() {
				if err := pullAll(ctx, c.addr, img); err != nil && strings.Contains(err.Error(), "WRONG BYTES") {
					wrong.Store(err.Error(), true)
				}
			})
		}
		time.Sleep(time.Duration(50+rng.IntN(1200)) * time.Millisecond)
		c.kill()
		cancel()
		wg.Wait()
		wrong.Range(func(k, _ any) bool { t.Errorf("kill %d: %s", i, k); return true })
		n := verifyStore(t, data)
		t.Logf("kill %d: %d committed files, all verified", i, n)
		// Evict the committed layers (the index still lists them) so the
		// next round fills again instead of only hitting the cache, and the
		// restart must drop index entries whose files are gone.
		for _, b := range img.Layers {
			os.Remove(filepath.Join(data, "blobs", "sha256", b.Digest.Encoded()[:2], b.Digest.Encoded()))
		}
	}
	c := startChild(t, env, logPath)
	for range 2 {
		if err := pullAll(context.Background(), c.addr, img); err != nil {
			t.Fatalf("pull after %d kills: %v", kills, err)
		}
	}
	c.stop(t)
	verifyStore(t, data)
	if left, _ := os.ReadDir(filepath.Join(data, "tmp")); len(left) != 0 {
		t.Errorf("%d temporary files left after a clean stop", len(left))
	}
	ix, err := cacheindex.Open(filepath.Join(data, "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	for _, b := range img.Blobs() {
		if _, ok, _ := ix.Blob(t.Context(), b.Digest); !ok {
			t.Errorf("blob %s is in the store but not in the index", b.Digest)
		}
	}
}
