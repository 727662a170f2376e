// Package docker_test builds regcache's container image with `make image`
// against a private dockerd and runs it the way the guide runs the
// registry image.
package docker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

const (
	image   = "regcache-test"
	version = "1.2.3-test"
	ref     = image + ":" + version
	// hubUser and hubToken are the upstream account, as in the guide's
	// REGISTRY_PROXY_USERNAME and REGISTRY_PROXY_PASSWORD.
	hubUser  = "me"
	hubToken = "hub-token-123"
	uid      = 65532
)

// registryDocsConfig is a pull-through cache's config.yml as the registry
// image's documentation shows it: the image's default file plus a proxy
// section. %[1]s is http.addr, %[2]s the remote URL.
const registryDocsConfig = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: %[1]s
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
proxy:
  remoteurl: %[2]s
  username: ` + hubUser + `
  password: ` + hubToken + `
`

// TestImage: `make image` builds an image under 30 MB that prints its
// version stamp; run with host networking and the guide's REGISTRY_*
// variables, or with Distribution's config.yml mounted at either of the
// registry image's paths, it becomes healthy, serves the upstream's images
// with their digests to skopeo, keeps them in the /var/lib/registry volume
// and runs as user 65532. A user's REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY
// beats the image's defaults and the mounted file.
func TestImage(t *testing.T) {
	d := testenv.StartDockerd(t, testenv.DockerdOptions{})
	makeBin := testenv.RequireTool(t, "make")
	skopeo := testenv.RequireTool(t, "skopeo")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, makeBin, "-C", root, "image", "IMAGE="+image, "VERSION="+version, "CONTEXT="+t.TempDir())
	build.Env = append(os.Environ(), "DOCKER_HOST="+d.Host, "DOCKER_CONFIG="+filepath.Join(d.Dir, "cli"), "DOCKER_BUILDKIT=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s\n%s", err, out, d.Log())
	}
	out, err := d.Docker(ctx, "image", "inspect", "--format", "{{.Size}} {{.Config.User}} {{json .Config.Healthcheck.Test}}", ref)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	var user, health string
	if _, err := fmt.Sscan(out, &size, &user, &health); err != nil {
		t.Fatalf("image inspect %q: %v", out, err)
	}
	t.Logf("image %s: %d bytes, user %s, healthcheck %s", ref, size, user, health)
	// The stripped binary alone: 18.6 MB before keyless verification,
	// 35.7 MB with sigstore-go and what it brings (Rekor's entry types,
	// go-openapi, gRPC and OpenTelemetry through rekor-tiles and the
	// timestamp authority's client, go-tuf, certificate-transparency-go).
	// The bound catches the next such jump, which should be a decision.
	if size >= 40e6 {
		t.Errorf("image is %d bytes, want under 40 MB", size)
	}
	if user != "65532:65532" || health != `["CMD","/regcache","healthcheck"]` {
		t.Errorf("image user %q, healthcheck %s", user, health)
	}
	if out, err := d.Docker(ctx, "run", "--rm", "--network", "host", ref, "version"); err != nil || !strings.HasPrefix(out, "regcache "+version+" (commit ") {
		t.Errorf("regcache version in the image: %q, %v", out, err)
	}

	hub := testenv.NewHub(t)
	hub.SetCredentials(hubUser, hubToken)
	imgs := hub.Seed(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	// run starts a container of the image with host networking, the
	// image's HEALTHCHECK probed every second, and args before the image.
	run := func(t *testing.T, name string, args ...string) {
		t.Helper()
		// With host networking the ports are the host's: the test picks
		// free ones instead of -p 80:5000, and keeps the admin listener on
		// loopback as the docs advise for --network host.
		admin := freeAddr(t)
		all := []string{"run", "-d", "--restart=always", "--name=" + name, "--network", "host", "--health-interval", "1s",
			"-e", "REGCACHE_ADMIN_ADDR=" + admin}
		all = append(append(all, args...), ref)
		if out, err := d.Docker(ctx, all...); err != nil {
			t.Fatalf("docker run: %v\n%s\n%s", err, out, d.Log())
		}
		t.Cleanup(func() {
			if t.Failed() {
				logs, _ := d.Docker(context.Background(), "logs", name)
				t.Logf("logs of %s:\n%s", name, logs)
			}
			_, _ = d.Docker(context.Background(), "rm", "-f", "-v", name)
		})
		waitHealthy(t, ctx, d, name)
	}

	// pull pulls the single image and the manifest list through addr with
	// skopeo and checks their digests, then that the blobs are in the
	// container's volume below sub, owned by the image's user, and that
	// the process runs as that user.
	pull := func(t *testing.T, name, addr, sub string) {
		t.Helper()
		inspect := func(image string) string {
			cmd := exec.CommandContext(ctx, skopeo, "inspect", "--raw", "--tls-verify=false", "docker://"+addr+"/"+image)
			cmd.Env = append(testenv.DeadProxyEnv(), "PATH="+os.Getenv("PATH"), "HOME="+dir)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("skopeo inspect %s: %v", image, err)
			}
			sum := sha256.Sum256(out)
			return "sha256:" + hex.EncodeToString(sum[:])
		}
		for _, img := range []testenv.Image{imgs.Single, imgs.ManifestList} {
			if got := inspect(img.Repo + ":" + img.Tag); got != string(img.Digest) {
				t.Errorf("%s:%s through the mirror has digest %s, want %s", img.Repo, img.Tag, got, img.Digest)
			}
		}
		copyCmd := exec.CommandContext(ctx, skopeo, "copy", "--insecure-policy", "--src-tls-verify=false",
			"docker://"+addr+"/"+imgs.Single.Repo+"@"+string(imgs.Single.Digest), "dir:"+filepath.Join(t.TempDir(), "single"))
		copyCmd.Env = append(testenv.DeadProxyEnv(), "PATH="+os.Getenv("PATH"), "HOME="+dir)
		if out, err := copyCmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}

		vol, err := d.Docker(ctx, "inspect", "--format", `{{range .Mounts}}{{if eq .Destination "/var/lib/registry"}}{{.Source}}{{end}}{{end}}`, name)
		if err != nil || strings.TrimSpace(vol) == "" {
			t.Fatalf("the volume of %s: %q, %v", name, vol, err)
		}
		data := filepath.Join(strings.TrimSpace(vol), sub)
		for _, b := range imgs.Single.Blobs() {
			p := filepath.Join(data, "blobs", "sha256", b.Digest.Encoded()[:2], b.Digest.Encoded())
			fi, err := os.Stat(p)
			if err != nil {
				t.Errorf("blob %s is not in the volume: %v", b.Digest, err)
				continue
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || fi.Size() != b.Size {
				t.Errorf("blob %s in the volume: owner %d, size %d; want %d, %d", b.Digest, st.Uid, fi.Size(), uid, b.Size)
			}
		}
		pid, err := d.Docker(ctx, "inspect", "--format", "{{.State.Pid}}", name)
		if err != nil {
			t.Fatal(err)
		}
		status, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(pid), "status"))
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d\n", uid, uid, uid, uid)
		if !strings.Contains(string(status), want) {
			t.Errorf("the mirror's process is not user %d:\n%s", uid, status)
		}
	}
	logs := func(t *testing.T, name string) string {
		t.Helper()
		out, err := d.Docker(ctx, "logs", name)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	t.Run("guide's variables", func(t *testing.T) {
		before := authedTokenRequests(hub)
		addr := freeAddr(t)
		run(t, "through-cache",
			"-e", "REGISTRY_HTTP_ADDR="+addr,
			"-e", "REGISTRY_PROXY_REMOTEURL="+hub.URL,
			"-e", "REGISTRY_PROXY_USERNAME="+hubUser,
			"-e", "REGISTRY_PROXY_PASSWORD="+hubToken)
		pull(t, "through-cache", addr, "")
		if authedTokenRequests(hub) == before {
			t.Error("the mirror asked the upstream's token endpoint without the credentials")
		}
		l := logs(t, "through-cache")
		if !strings.Contains(l, `"msg":"regcache listening","version":"`+version+`"`) || !strings.Contains(l, `"data":"/var/lib/registry"`) {
			t.Errorf("start-up line: want version %s and data /var/lib/registry:\n%s", version, l)
		}
		if strings.Contains(l, "regcache ignores") || strings.Contains(l, hubToken) {
			t.Errorf("the guide's variables warned, or the log shows the token:\n%s", l)
		}
	})

	config := func(t *testing.T, addr string) string {
		p := filepath.Join(t.TempDir(), "config.yml")
		if err := os.WriteFile(p, []byte(fmt.Sprintf(registryDocsConfig, addr, hub.URL)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("config.yml at Distribution 2's path", func(t *testing.T) {
		before := authedTokenRequests(hub)
		addr := freeAddr(t)
		run(t, "v2-config", "-v", config(t, addr)+":/etc/docker/registry/config.yml:ro")
		pull(t, "v2-config", addr, "")
		if authedTokenRequests(hub) == before {
			t.Error("the mirror asked the upstream's token endpoint without the config's credentials")
		}
		l := logs(t, "v2-config")
		if !strings.Contains(l, `"config":"/etc/docker/registry/config.yml"`) {
			t.Errorf("the start-up line does not name the config file:\n%s", l)
		}
		if !strings.Contains(l, "regcache ignores these keys of it, which it does not use: log.fields, storage.cache, http.headers, health") {
			t.Errorf("no warning naming the unused keys:\n%s", l)
		}
	})
	t.Run("config.yml at Distribution 3's path, variables over it", func(t *testing.T) {
		// Distribution 3 reads only its own path: with both, regcache too
		// takes /etc/distribution/config.yml; the other one names a port
		// nothing dials.
		old := config(t, "127.0.0.1:9")
		addr := freeAddr(t)
		run(t, "v3-config",
			"-v", config(t, addr)+":/etc/distribution/config.yml:ro",
			"-v", old+":/etc/docker/registry/config.yml:ro",
			"-e", "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/registry/mine",
			"-e", "REGISTRY_STORAGE_DELETE_ENABLED=true")
		pull(t, "v3-config", addr, "mine")
		l := logs(t, "v3-config")
		if !strings.Contains(l, "regcache ignores these environment variables of the Distribution registry, which it does not use: REGISTRY_STORAGE_DELETE_ENABLED") {
			t.Errorf("no warning naming REGISTRY_STORAGE_DELETE_ENABLED:\n%s", l)
		}
	})
}

// waitHealthy waits until docker reports the container healthy (its
// HEALTHCHECK, `regcache healthcheck`, passed).
func waitHealthy(t *testing.T, ctx context.Context, d *testenv.Dockerd, name string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := d.Docker(ctx, "inspect", "--format", "{{json .State}}", name)
		var st struct {
			Status string
			Health struct {
				Status string
				Log    []struct {
					ExitCode int
					Output   string
				}
			}
		}
		if err == nil {
			err = json.Unmarshal([]byte(out), &st)
		}
		if err == nil && st.Health.Status == "healthy" {
			if n := len(st.Health.Log); n == 0 || st.Health.Log[n-1].ExitCode != 0 || strings.TrimSpace(st.Health.Log[n-1].Output) != "ok" {
				t.Errorf("healthy, but the last probe was %+v", st.Health.Log)
			}
			return
		}
		if time.Now().After(deadline) {
			logs, _ := d.Docker(ctx, "logs", name)
			t.Fatalf("%s not healthy after 60s: %s (%v)\nlogs:\n%s", name, out, err, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// freeAddr is a free 127.0.0.1 address.
func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }

// authedTokenRequests counts the token requests that carried credentials.
func authedTokenRequests(h *testenv.Hub) int {
	n := 0
	for _, r := range h.Requests() {
		if r.Kind == testenv.KindToken && r.Auth {
			n++
		}
	}
	return n
}
