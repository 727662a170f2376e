// Package docs_test runs the command blocks of the documentation that
// promise to be run.
package docs_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/regcache/regcache/internal/testenv"
)

// block is one ```sh block of a document and the marker before it:
// <!-- on: HOST[; expect: TEXT] -->.
type block struct {
	line   int
	on     string
	expect string
	script string
}

var (
	fence  = regexp.MustCompile("(?m)^```([a-z]*)\n")
	marker = regexp.MustCompile(`<!-- on: ([a-z]+)(?:; expect: (.*?))? -->\s*$`)
)

// parseBlocks returns the ```sh blocks of doc; every one must carry a
// marker, so none can be left out of the run.
func parseBlocks(t *testing.T, doc string) []block {
	t.Helper()
	var out []block
	rest, offset := doc, 0
	for {
		loc := fence.FindStringSubmatchIndex(rest)
		if loc == nil {
			return out
		}
		lang := rest[loc[2]:loc[3]]
		body := rest[loc[1]:]
		end := strings.Index(body, "\n```")
		if end < 0 {
			t.Fatalf("an unclosed ``` block at byte %d", offset+loc[0])
		}
		line := strings.Count(doc[:offset+loc[0]], "\n") + 1
		if lang == "sh" {
			before := strings.TrimRight(rest[:loc[0]], "\n")
			m := marker.FindStringSubmatch(before[strings.LastIndex(before, "\n")+1:])
			if m == nil {
				t.Fatalf("line %d: a ```sh block without <!-- on: HOST --> before it; every sh block of this page is run", line)
			}
			out = append(out, block{line: line, on: m[1], expect: m[2], script: body[:end+1]})
		}
		next := loc[1] + end + len("\n```")
		rest, offset = rest[next:], offset+next
	}
}

// TestQuickstart runs every command of docs/quickstart.md, in order, on
// the host its marker names: "build" in the repository (make, with the
// mirror host's dockerd), "mirror" with the mirror host's private dockerd,
// "node" with a CI node's private dockerd, "firewall" in a network
// namespace of its own with Docker's DOCKER-USER chain. The page's names
// become loopback test servers (the table in subst); sudo is a no-op, the
// test being root.
func TestQuickstart(t *testing.T) {
	doc, err := os.ReadFile("quickstart.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseBlocks(t, string(doc))
	hosts := map[string]bool{}
	for _, b := range blocks {
		hosts[b.on] = true
	}
	for _, h := range []string{"build", "mirror", "node", "firewall"} {
		if !hosts[h] {
			t.Errorf("no block runs on %s", h)
		}
	}
	for h := range hosts {
		if h != "build" && h != "mirror" && h != "node" && h != "firewall" {
			t.Fatalf("unknown host %q in a marker", h)
		}
	}

	testenv.RequireTool(t, "make")
	testenv.RequireTool(t, "curl")
	ipBin := testenv.RequireTool(t, "ip")
	testenv.RequireTool(t, "iptables")
	mirror := testenv.StartDockerd(t, testenv.DockerdOptions{})
	node := testenv.StartDockerd(t, testenv.DockerdOptions{})

	hub := testenv.NewHub(t)
	hub.SetCredentials("myhubuser", "dckr_pat_example")
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(hub.AdminHost+"/library/alpine:3.20", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("seed the upstream: %v", err)
	}

	ns := "rcq" + strconv.Itoa(os.Getpid())
	if out, err := exec.Command(ipBin, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(ipBin, "netns", "del", ns).Run() })
	// Docker makes the chain; a fresh namespace has none.
	if out, err := exec.Command(ipBin, "netns", "exec", ns, "iptables", "-N", "DOCKER-USER").CombinedOutput(); err != nil {
		t.Fatalf("iptables -N DOCKER-USER: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = mirror.Docker(context.Background(), "rm", "-f", "through-cache") })

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	nodeDir, binDir, contextDir := t.TempDir(), t.TempDir(), t.TempDir()
	port, admin := testenv.FreePort(t), testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	adminAddr := "127.0.0.1:" + strconv.Itoa(admin)
	engineFlags := fmt.Sprintf(" --config %s --pidfile %s --host %s", node.ConfigFile, node.PIDFile, node.Host)
	subst := strings.NewReplacer(
		// The mirror host's ports are the test machine's: host networking
		// on free ports instead of -p (the test's dockerd has no bridge).
		"-p 80:5000 -p 127.0.0.1:5001:5001", "--network host -e REGISTRY_HTTP_ADDR="+addr+" -e REGCACHE_ADMIN_ADDR="+adminAddr,
		"127.0.0.1:5001", adminAddr,
		"http://10.0.0.5", "http://"+addr,
		"10.0.0.0/8", "127.0.0.0/8",
		"https://registry-1.docker.io", hub.URL,
		"regcache client docker enable", "regcache client docker enable"+engineFlags,
		"regcache client docker disable", "regcache client docker disable"+engineFlags,
		"/usr/local/bin/regcache", filepath.Join(binDir, "regcache"),
	)
	for _, c := range []string{"http://10.0.0.5", "10.0.0.0/8", "https://registry-1.docker.io", "myhubuser", "dckr_pat_example"} {
		if !strings.Contains(string(doc), c) {
			t.Errorf("quickstart.md no longer says %s, which its table names", c)
		}
	}

	base := append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH"))
	for i, b := range blocks {
		script := subst.Replace(b.script)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		bash := []string{"bash", "-euo", "pipefail", "-c", "sudo() { \"$@\"; }\n" + script}
		var cmd *exec.Cmd
		switch b.on {
		case "firewall":
			cmd = exec.CommandContext(ctx, ipBin, append([]string{"netns", "exec", ns}, bash...)...)
		default:
			cmd = exec.CommandContext(ctx, bash[0], bash[1:]...)
		}
		cmd.Env = base
		switch b.on {
		case "build":
			cmd.Dir = root
			cmd.Env = append(cmd.Env, "DOCKER_HOST="+mirror.Host, "DOCKER_CONFIG="+filepath.Join(mirror.Dir, "cli"),
				"DOCKER_BUILDKIT=0", "CONTEXT="+contextDir)
		case "mirror":
			cmd.Dir = t.TempDir()
			cmd.Env = append(cmd.Env, "DOCKER_HOST="+mirror.Host, "DOCKER_CONFIG="+filepath.Join(mirror.Dir, "cli"))
		case "node":
			cmd.Dir = nodeDir
			cmd.Env = append(cmd.Env, "DOCKER_HOST="+node.Host, "DOCKER_CONFIG="+filepath.Join(node.Dir, "cli"))
			cmd.Env = append(cmd.Env, testenv.DeadProxyEnv()...)
		}
		out, err := cmd.CombinedOutput()
		cancel()
		t.Logf("block %d (line %d, on %s):\n%s\n-> %s", i+1, b.line, b.on, script, out)
		if err != nil {
			logs, _ := mirror.Docker(context.Background(), "logs", "through-cache")
			t.Fatalf("block %d (line %d, on %s) failed: %v\n%s\nmirror's log:\n%s\nnode's dockerd:\n%s", i+1, b.line, b.on, err, out, logs, node.Log())
		}
		if want := subst.Replace(b.expect); want != "" && !strings.Contains(string(out), want) {
			t.Fatalf("block %d (line %d, on %s) did not print %q", i+1, b.line, b.on, want)
		}
		if b.on == "build" {
			// The page says: copy bin/regcache to the node.
			copyFile(t, filepath.Join(root, "bin", "regcache"), filepath.Join(nodeDir, "regcache"))
		}
	}
	if n := hub.CountRef("GET", testenv.KindManifest, "3.20"); n == 0 {
		t.Error("the upstream never saw the manifest GET of alpine:3.20: the pull did not go through the mirror")
	}
	if out, err := mirror.Docker(t.Context(), "ps", "-a", "--format", "{{.Names}}"); err != nil || strings.Contains(out, "through-cache") {
		t.Errorf("the mirror container is still there after the last step: %q, %v", out, err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestParseBlocks: an unmarked sh block is refused; text blocks are not run.
func TestParseBlocks(t *testing.T) {
	t.Parallel()
	got := parseBlocks(t, "a\n\n<!-- on: node; expect: ok -->\n```sh\necho ok\n```\n\n```text\nout\n```\n<!-- on: mirror -->\n```sh\nx\ny\n```\n")
	if len(got) != 2 || got[0].on != "node" || got[0].expect != "ok" || got[0].script != "echo ok\n" || got[1].on != "mirror" || got[1].script != "x\ny\n" {
		t.Errorf("parsed %+v", got)
	}
}
