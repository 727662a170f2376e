package apptest_test

// Real clients pulling through regcache with two real upstreams: two Debian
// docker-registry (Distribution 2.8) processes configured in one regcache as
// docker.io (the default upstream) and ghcr.io, both with token auth like
// the real ones (anonymous pull of public repositories; regcache holds its
// own credentials for each).
// Both upstreams hold a repository owner/single:1.0 with different content,
// so a mix-up of tags, manifests or blobs between upstreams shows up as a
// wrong digest. Each client gets its own mirror (same configuration, own
// data directory), so its access log holds only that client's requests.
//
// Every client runs with HTTP(S)_PROXY at a dead loopback port: a fallback
// to the real registry fails at once, locally, and visibly.

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/regcache/regcache/internal/app/apptest"
	"github.com/regcache/regcache/internal/testenv"
)

// hostAlias is the Host name configured as an alias of ghcr.io for clients
// that can dial a name of our choosing (go-containerregistry with its own
// transport). For clients that resolve names themselves (skopeo), the alias
// is "localhost", the only other name of 127.0.0.1 on every machine.
const hostAlias = "ghcr.mirror.test"

// upstreams is the shared set-up: two registries and what was pushed.
type upstreams struct {
	hub, ghcr         *testenv.Distribution
	hubImgs, ghcrImgs testenv.Images
	alpine            string // digest of library/alpine:3.20 (a manifest list) on docker.io
	config            string // regcache YAML naming both
}

func startUpstreams(t *testing.T) *upstreams {
	t.Helper()
	u := &upstreams{
		hub:  testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthToken}),
		ghcr: testenv.NewDistribution(t, testenv.DistributionOptions{Auth: testenv.AuthToken}),
	}
	hubAuth := &authn.Basic{Username: u.hub.Username, Password: u.hub.Password}
	ghcrAuth := &authn.Basic{Username: u.ghcr.Username, Password: u.ghcr.Password}
	// Same repository names and tag on both, different content (seeds).
	u.hubImgs = testenv.Seed(t, u.hub.Host, hubAuth, testenv.WithPrefix("owner/"), testenv.WithTag("1.0"), testenv.WithSeed(1))
	u.ghcrImgs = testenv.Seed(t, u.ghcr.Host, ghcrAuth, testenv.WithPrefix("owner/"), testenv.WithTag("1.0"), testenv.WithSeed(2))
	if u.hubImgs.Single.Digest == u.ghcrImgs.Single.Digest {
		t.Fatal("both upstreams hold the same owner/single; the mix-up checks would prove nothing")
	}
	// alpine:3.20 for dockerd: a multi-arch manifest list, like the real one.
	src := u.hub.Host + "/" + u.hubImgs.ManifestList.Repo + ":1.0"
	if err := crane.Copy(src, u.hub.Host+"/library/alpine:3.20", crane.Insecure, crane.WithAuth(hubAuth), crane.WithContext(t.Context())); err != nil {
		t.Fatalf("push library/alpine:3.20: %v", err)
	}
	u.alpine = string(u.hubImgs.ManifestList.Digest)

	u.config = filepath.Join(t.TempDir(), "regcache.yaml")
	cfg := fmt.Sprintf(`freshness: 1m
upstreams:
  - name: docker.io
    url: %s
    username: %s
    password: %s
  - name: ghcr.io
    url: %s
    username: %s
    password: %s
    aliases: [localhost, %s]
`, u.hub.URL, u.hub.Username, u.hub.Password, u.ghcr.URL, u.ghcr.Username, u.ghcr.Password, hostAlias)
	if err := os.WriteFile(u.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return u
}

// mirror starts a regcache with the shared configuration and its own data.
func (u *upstreams) mirror(t *testing.T) *apptest.Mirror {
	return apptest.Start(t, map[string]string{"REGCACHE_CONFIG": u.config})
}

// accessLine is one access-log line of regcache.
type accessLine struct {
	Msg        string `json:"msg"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Status     int    `json:"status"`
	Upstream   string `json:"upstream"`
	Route      string `json:"route"`
	Repository string `json:"repository"`
	Error      string `json:"error"`
}

func accessLog(t *testing.T, m *apptest.Mirror) []accessLine {
	t.Helper()
	var out []accessLine
	for line := range strings.Lines(m.Log()) {
		var l accessLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if l.Msg == "request" {
			out = append(out, l)
		}
	}
	return out
}

// pull is what a client was asked to fetch through the mirror: the
// upstream and repository regcache must resolve it to, and the route.
type pull struct{ upstream, repo, route string }

// checkRoutes proves from the access log that every expected pull had a
// successful manifest request routed as expected, and that every routed
// request (manifests and blobs) belongs to one of the expected pulls: no
// request went to another upstream, repository or route.
func checkRoutes(t *testing.T, m *apptest.Mirror, pulls ...pull) {
	t.Helper()
	lines := accessLog(t, m)
	for _, p := range pulls {
		ok := false
		for _, l := range lines {
			if l.Upstream == p.upstream && l.Repository == p.repo && l.Route == p.route &&
				strings.Contains(l.Path, "/manifests/") && l.Status == http.StatusOK {
				ok = true
			}
		}
		if !ok {
			t.Errorf("no successful manifest request for %s %s by route %q in the access log", p.upstream, p.repo, p.route)
		}
	}
	for _, l := range lines {
		if l.Upstream == "" {
			continue // /v2/ pings, unrouted errors
		}
		known := false
		for _, p := range pulls {
			known = known || (l.Upstream == p.upstream && l.Repository == p.repo && l.Route == p.route)
		}
		if !known {
			t.Errorf("unexpected request %s %s → %s %s by route %q (status %d)", l.Method, l.Path, l.Upstream, l.Repository, l.Route, l.Status)
		}
		if l.Status >= 400 {
			t.Errorf("%s %s → %d %s", l.Method, l.Path, l.Status, l.Error)
		}
	}
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRealClients pulls through regcache with podman, containerd (ctr),
// dockerd, skopeo and go-containerregistry, each by the route its own
// configuration makes it take, and checks digests and the access log.
func TestRealClients(t *testing.T) {
	testenv.RequireTool(t, "docker-registry")
	u := startUpstreams(t)
	hubSingle, ghcrSingle := u.hubImgs.Single, u.ghcrImgs.Single

	// podman with a registries.conf drop-in: docker.io mirrored at the
	// mirror's root, ghcr.io under a location prefix <mirror>/ghcr.io.
	t.Run("podman", func(t *testing.T) {
		t.Parallel()
		m := u.mirror(t)
		p := testenv.NewPodman(t, testenv.PodmanOptions{})
		conf := fmt.Sprintf(`[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = %[1]q
insecure = true

[[registry]]
prefix = "ghcr.io"
location = "ghcr.io"
[[registry.mirror]]
location = "%[1]s/ghcr.io"
insecure = true
`, m.Host)
		if err := os.WriteFile(filepath.Join(p.DropInDir, "90-regcache.conf"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx := withTimeout(t, 60*time.Second)
		for _, c := range []struct{ ref, want string }{
			{"docker.io/owner/single:1.0", string(hubSingle.Digest)},
			{"ghcr.io/owner/single:1.0", string(ghcrSingle.Digest)},
		} {
			if out, err := p.Run(ctx, "pull", "--quiet", c.ref); err != nil {
				t.Fatalf("podman pull %s: %v\n%s", c.ref, err, out)
			}
			out, err := p.Run(ctx, "image", "inspect", "--format", "{{.Digest}}", c.ref)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out); got != c.want {
				t.Errorf("podman %s: digest %s, upstream %s", c.ref, got, c.want)
			}
		}
		checkRoutes(t, m,
			pull{"docker.io", "owner/single", "default"},
			pull{"ghcr.io", "owner/single", "prefix"})

		// A mirror for a registry regcache does not have: 404
		// NAME_UNKNOWN, and podman falls back to quay.io itself.
		quay := fmt.Sprintf("[[registry]]\nprefix = \"quay.io\"\nlocation = \"quay.io\"\n[[registry.mirror]]\nlocation = \"%s/quay.io\"\ninsecure = true\n", m.Host)
		if err := os.WriteFile(filepath.Join(p.DropInDir, "91-quay.conf"), []byte(quay), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := p.Run(ctx, "pull", "--quiet", "quay.io/owner/single:1.0")
		if err == nil {
			t.Fatalf("podman pull quay.io succeeded:\n%s", out)
		}
		for _, want := range []string{
			`name unknown: registry "quay.io" is not configured on this mirror`,
			`Get "https://quay.io/v2/": proxyconnect tcp: dial tcp 127.0.0.1:9`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("podman pull quay.io: no %q in\n%s", want, out)
			}
		}
	})

	// containerd with ctr --hosts-dir: hosts.toml for docker.io and ghcr.io
	// (containerd adds ?ns=<registry>), and _default for every other
	// registry; quay.io is not configured in regcache, which answers
	// NAME_UNKNOWN, and containerd falls back to quay.io itself.
	t.Run("containerd", func(t *testing.T) {
		t.Parallel()
		m := u.mirror(t)
		c := testenv.StartContainerd(t, testenv.ContainerdOptions{})
		hosts := map[string]string{"docker.io": "https://registry-1.docker.io", "ghcr.io": "https://ghcr.io", "_default": ""}
		for dir, server := range hosts {
			toml := fmt.Sprintf("[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", m.URL)
			if server != "" {
				toml = fmt.Sprintf("server = %q\n\n", server) + toml
			}
			if err := os.MkdirAll(filepath.Join(c.HostsDir, dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(c.HostsDir, dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ctx := withTimeout(t, 60*time.Second)
		want := map[string]string{
			"docker.io/owner/single:1.0": string(hubSingle.Digest),
			"ghcr.io/owner/single:1.0":   string(ghcrSingle.Digest),
		}
		for _, ref := range []string{"docker.io/owner/single:1.0", "ghcr.io/owner/single:1.0"} {
			if out, err := c.Pull(ctx, ref); err != nil {
				t.Fatalf("ctr pull %s: %v\n%s\n%s", ref, err, out, c.Log())
			}
		}
		// An image named after the mirror carries no ns: the path prefix routes it.
		direct := m.Host + "/ghcr.io/owner/oci:1.0"
		if out, err := c.Ctr(ctx, "images", "pull", "--plain-http", "--snapshotter", "native", direct); err != nil {
			t.Fatalf("ctr pull %s: %v\n%s", direct, err, out)
		}
		want[direct] = string(u.ghcrImgs.OCIIndex.Digest)
		out, err := c.Ctr(ctx, "images", "ls")
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(out) {
			f := strings.Fields(line)
			if len(f) >= 3 && want[f[0]] != "" {
				if f[2] != want[f[0]] {
					t.Errorf("ctr %s: digest %s, upstream %s", f[0], f[2], want[f[0]])
				}
				delete(want, f[0])
			}
		}
		if len(want) > 0 {
			t.Errorf("not in ctr images ls: %v\n%s", want, out)
		}
		checkRoutes(t, m,
			pull{"docker.io", "owner/single", "ns"},
			pull{"ghcr.io", "owner/single", "ns"},
			pull{"ghcr.io", "owner/oci", "prefix"})

		// An unconfigured registry: regcache refuses, containerd falls back.
		out, err = c.Pull(ctx, "quay.io/owner/single:1.0")
		if err == nil {
			t.Fatalf("ctr pull quay.io succeeded:\n%s", out)
		}
		if !strings.Contains(out, `https://quay.io/v2/owner/single/manifests/1.0": proxyconnect tcp: dial tcp 127.0.0.1:9`) {
			t.Errorf("ctr did not fall back to https://quay.io (through the dead proxy):\n%s", out)
		}
		refused := false
		for _, l := range accessLog(t, m) {
			if strings.HasPrefix(l.Path, "/v2/owner/single/manifests/") && l.Status == http.StatusNotFound && l.Error == "NAME_UNKNOWN" {
				refused = true
			}
		}
		if !refused {
			t.Error("regcache did not answer quay.io with 404 NAME_UNKNOWN")
		}
	})

	// dockerd with registry-mirrors: docker pull alpine:3.20.
	t.Run("dockerd", func(t *testing.T) {
		t.Parallel()
		m := u.mirror(t)
		d := testenv.StartDockerd(t, testenv.DockerdOptions{
			Config: fmt.Sprintf(`{"registry-mirrors": [%q], "insecure-registries": [%q]}`, m.URL, m.Host),
		})
		ctx := withTimeout(t, 60*time.Second)
		if out, err := d.Docker(ctx, "pull", "alpine:3.20"); err != nil {
			t.Fatalf("docker pull: %v\n%s\n%s", err, out, d.Log())
		}
		out, err := d.Docker(ctx, "image", "inspect", "--format", "{{join .RepoDigests \" \"}}", "alpine:3.20")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(out), "alpine@"+u.alpine; got != want {
			t.Errorf("docker RepoDigests %q, want %q", got, want)
		}
		// Other registries through dockerd (and so the Nomad docker
		// driver): name the mirror in the image, with the path prefix.
		prefixed := m.Host + "/ghcr.io/owner/single:1.0"
		if out, err := d.Docker(ctx, "pull", prefixed); err != nil {
			t.Fatalf("docker pull %s: %v\n%s", prefixed, err, out)
		}
		out, err = d.Docker(ctx, "image", "inspect", "--format", "{{join .RepoDigests \" \"}}", prefixed)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(out), m.Host+"/ghcr.io/owner/single@"+string(ghcrSingle.Digest); got != want {
			t.Errorf("docker RepoDigests %q, want %q", got, want)
		}
		checkRoutes(t, m,
			pull{"docker.io", "library/alpine", "default"},
			pull{"ghcr.io", "owner/single", "prefix"})

		// An image the mirror cannot serve: dockerd falls back to Docker Hub.
		out, err = d.Docker(ctx, "pull", "owner/missing:1.0")
		if err == nil || !strings.Contains(out, `Get "https://registry-1.docker.io/v2/": proxyconnect tcp: dial tcp 127.0.0.1:9`) {
			t.Errorf("docker pull of an image the mirror lacks: %v; want a fallback to Docker Hub (into the dead proxy):\n%s", err, out)
		}
		asked := false
		for _, l := range accessLog(t, m) {
			asked = asked || (l.Repository == "owner/missing" && l.Route == "default" && l.Status >= 400)
		}
		if !asked {
			t.Error("dockerd did not ask the mirror for owner/missing first")
		}

		// dockerd mirrors Docker Hub only: another registry is pulled
		// directly (here: into the dead proxy), never through the mirror.
		before := len(accessLog(t, m))
		if out, err := d.Docker(ctx, "pull", "ghcr.io/owner/single:1.0"); err == nil {
			t.Fatalf("docker pull ghcr.io succeeded without a route to it:\n%s", out)
		}
		if after := accessLog(t, m); len(after) != before {
			t.Errorf("dockerd sent a ghcr.io pull to the mirror: %+v", after[before:])
		}
	})

	// skopeo: path prefixes for both upstreams, the Host alias "localhost"
	// for ghcr.io, and the root for docker.io, in an order where a mix-up
	// of owner/single between upstreams would be served from cache.
	t.Run("skopeo", func(t *testing.T) {
		t.Parallel()
		skopeo := testenv.RequireTool(t, "skopeo")
		m := u.mirror(t)
		_, port, _ := net.SplitHostPort(m.Host)
		ctx := withTimeout(t, 60*time.Second)
		for _, c := range []struct{ ref, want string }{
			{m.Host + "/docker.io/owner/single:1.0", string(hubSingle.Digest)},
			{m.Host + "/ghcr.io/owner/single:1.0", string(ghcrSingle.Digest)},
			{"localhost:" + port + "/owner/multi:1.0", string(u.ghcrImgs.ManifestList.Digest)},
			{m.Host + "/owner/oci:1.0", string(u.hubImgs.OCIIndex.Digest)},
		} {
			if got := skopeoPull(ctx, t, skopeo, c.ref); got != c.want {
				t.Errorf("skopeo %s: digest %s, upstream %s", c.ref, got, c.want)
			}
		}
		checkRoutes(t, m,
			pull{"docker.io", "owner/single", "prefix"},
			pull{"ghcr.io", "owner/single", "prefix"},
			pull{"ghcr.io", "owner/multi", "host"},
			pull{"docker.io", "owner/oci", "default"})
	})

	// go-containerregistry: path prefixes, and as Host an alias that is not
	// a name of 127.0.0.1 and the upstream's own name (the transport dials
	// the mirror whatever the host).
	t.Run("ggcr", func(t *testing.T) {
		t.Parallel()
		m := u.mirror(t)
		_, port, _ := net.SplitHostPort(m.Host)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, m.Host)
		}
		ctx := withTimeout(t, 60*time.Second)
		for _, c := range []struct{ ref, want string }{
			{m.Host + "/ghcr.io/owner/oci:1.0", string(u.ghcrImgs.OCIIndex.Digest)},
			{m.Host + "/docker.io/owner/oci:1.0", string(u.hubImgs.OCIIndex.Digest)},
			{hostAlias + ":" + port + "/owner/single:1.0", string(ghcrSingle.Digest)},
			{m.Host + "/docker.io/library/alpine:3.20", u.alpine},
			// The upstream's own name as Host: a client sent to the
			// mirror by DNS for ghcr.io.
			{"ghcr.io/owner/multi:1.0", string(u.ghcrImgs.ManifestList.Digest)},
		} {
			if got := cranePull(ctx, t, tr, c.ref); got != c.want {
				t.Errorf("ggcr %s: digest %s, upstream %s", c.ref, got, c.want)
			}
		}
		checkRoutes(t, m,
			pull{"ghcr.io", "owner/oci", "prefix"},
			pull{"docker.io", "owner/oci", "prefix"},
			pull{"ghcr.io", "owner/single", "host"},
			pull{"docker.io", "library/alpine", "prefix"},
			pull{"ghcr.io", "owner/multi", "host"})
	})

	// A registry that is not configured is refused by name, by ?ns= and by
	// path prefix, never pulled from the default upstream.
	t.Run("unknown registry", func(t *testing.T) {
		t.Parallel()
		m := u.mirror(t)
		for _, path := range []string{
			"/v2/owner/single/manifests/1.0?ns=quay.io",
			"/v2/quay.io/owner/single/manifests/1.0",
		} {
			resp, err := http.Get(m.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Errors []struct{ Code, Message string } `json:"errors"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || err != nil || len(body.Errors) != 1 ||
				body.Errors[0].Code != "NAME_UNKNOWN" || !strings.Contains(body.Errors[0].Message, `"quay.io"`) {
				t.Errorf("GET %s: %d %+v (%v); want 404 NAME_UNKNOWN naming quay.io", path, resp.StatusCode, body, err)
			}
		}
		checkRoutes(t, m) // nothing was routed to an upstream
	})
}

// skopeoPull copies ref into a dir: layout (every blob verified by skopeo)
// and returns the digest of the manifest the mirror serves for ref.
func skopeoPull(ctx context.Context, t *testing.T, skopeo, ref string) string {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) []byte {
		cmd := exec.CommandContext(ctx, skopeo, append([]string{"--policy", policy}, args...)...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}, testenv.DeadProxyEnv()...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("skopeo %v: %v\n%s", args, err, stderr.String())
		}
		return []byte(stdout.String())
	}
	run("copy", "--all", "--src-tls-verify=false", "--src-no-creds", "docker://"+ref, "dir:"+filepath.Join(dir, "img"))
	raw := run("inspect", "--raw", "--tls-verify=false", "--no-creds", "docker://"+ref)
	return fmt.Sprintf("sha256:%x", sha256.Sum256(raw))
}

// cranePull fetches ref with go-containerregistry over tr, reads and
// verifies every blob, and returns the manifest digest.
func cranePull(ctx context.Context, t *testing.T, tr http.RoundTripper, ref string) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r, remote.WithTransport(tr), remote.WithContext(ctx))
	if err != nil {
		t.Fatalf("ggcr pull %s: %v", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err == nil {
			err = validate.Index(idx)
		}
		if err != nil {
			t.Fatalf("ggcr pull %s: %v", ref, err)
		}
	} else {
		img, err := desc.Image()
		if err == nil {
			err = validate.Image(img)
		}
		if err != nil {
			t.Fatalf("ggcr pull %s: %v", ref, err)
		}
	}
	return desc.Digest.String()
}
