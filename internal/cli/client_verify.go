package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/canary"
	"github.com/regcache/regcache/internal/fleet"
)

// verifyOptions are the flags of `status --verify`.
type verifyOptions struct {
	verify bool
	admin  string
}

func (v *verifyOptions) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&v.verify, "verify", false, "have the engine pull a canary image the mirror makes up ("+canary.Repo+":v-<random>), ask the mirror's admin API whether that pull arrived and from which engine, then remove the image; exit 0 only if the engine really used the mirror")
	f.StringVar(&v.admin, "admin", "", "the mirror's admin listener, for --verify: host:port or URL (default: the mirror's host, port "+defaultAdminPort+")")
}

// defaultAdminPort is the port of the default admin address (127.0.0.1:5001).
const defaultAdminPort = "5001"

// verifyPullTimeout bounds the engine's pull of the canary (a few hundred
// bytes; the time goes to the engine's own retries and fallbacks).
const verifyPullTimeout = 2 * time.Minute

// canaryEngine is one engine's side of --verify.
type canaryEngine struct {
	name string // as the operator knows it: dockerd, containerd, podman
	// arrivesAs are the fleet engine names (from the User-Agent) its pulls
	// reach the mirror with.
	arrivesAs []string
	// pull has the engine pull ref (docker.io/regcache/canary:<tag>) as it
	// pulls any Docker Hub image; remove removes it again.
	pull, remove func(ctx context.Context, ref string) error
}

// adminBase is the admin listener's base URL: --admin, else the mirror's
// host at the default admin port.
func (v *verifyOptions) adminBase(mirror string) (string, error) {
	if v.admin != "" {
		u, err := parseAddress("--admin", v.admin)
		if err != nil {
			return "", err
		}
		return u.String(), nil
	}
	if mirror == "" {
		return "", notActive("--verify: no mirror is configured to derive the admin address from; give --admin or --mirror")
	}
	u, err := url.Parse(mirror)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("--verify: mirror %q has no host; give --admin", mirror)
	}
	return "http://" + net.JoinHostPort(u.Hostname(), defaultAdminPort), nil
}

// after runs --verify, when asked, after a status report that ended in
// statusErr: a failed verification is the answer; else statusErr is.
func (v *verifyOptions) after(ctx context.Context, w io.Writer, statusErr error, mirror string, e canaryEngine, timeout time.Duration) error {
	if !v.verify {
		return statusErr
	}
	if err := v.run(ctx, w, mirror, e, timeout); err != nil {
		fmt.Fprintln(w, err)
		return err
	}
	return statusErr
}

// run has the engine pull a fresh canary tag, asks the mirror whether it
// arrived, removes the image, and says what it found: nil only when the
// mirror served that tag to this engine.
func (v *verifyOptions) run(ctx context.Context, w io.Writer, mirror string, e canaryEngine, timeout time.Duration) error {
	admin, err := v.adminBase(mirror)
	if err != nil {
		return err
	}
	tag := freshCanaryTag()
	ref := "docker.io/" + canary.Repo + ":" + tag
	fmt.Fprintf(w, "verify: %s pulls %s (an image only the mirror has)\n", e.name, ref)
	pctx, cancel := context.WithTimeout(ctx, verifyPullTimeout)
	pullErr := e.pull(pctx, ref)
	cancel()
	if pullErr == nil {
		rctx, cancel := context.WithTimeout(ctx, timeout)
		if err := e.remove(rctx, ref); err != nil {
			fmt.Fprintf(w, "verify: could not remove %s: %v\n", ref, err)
		}
		cancel()
	}
	ans, err := askCanary(ctx, admin, tag, pullErr == nil, timeout)
	if err != nil {
		return notActive("verify failed: cannot ask the mirror's admin API at %s whether the pull arrived: %v (give --admin host:port of its admin listener, which must be reachable from this node)", admin, err)
	}
	switch {
	case !ans.Arrived && pullErr != nil:
		return notActive("verify failed: %s did not pull through the mirror: the mirror never saw this tag, and the engine said: %v", e.name, pullErr)
	case !ans.Arrived:
		return notActive("verify failed: the engine pulled from elsewhere: the mirror never saw this tag (%s got %s from another registry or mirror)", e.name, ref)
	case pullErr != nil:
		return notActive("verify failed: the mirror served the canary to %s, but the pull failed: %v", engineWords(ans.Engine), pullErr)
	case !slices.Contains(e.arrivesAs, ans.Engine.Name):
		return notActive("verify failed: the mirror served this tag to %s, not to %s: another client pulled it", engineWords(ans.Engine), e.name)
	}
	from := "from this node's address"
	if !ans.SameAddress {
		from = "from another address than this node's request to the admin API (a proxy or NAT between them)"
	}
	fmt.Fprintf(w, "verify: the mirror served %s to %s %s\n", tag, engineWords(ans.Engine), from)
	// The canary never leaves the mirror, so it arrives even when the
	// mirror cannot serve real images (credentials rejected, disk full);
	// the engine then falls back to the registry for those. /readyz says so.
	ready, text, err := askReady(ctx, admin, timeout)
	switch {
	case err != nil:
		return notActive("verify failed: cannot ask the mirror's admin API at %s whether it is ready: %v", admin, err)
	case !ready:
		return notActive("verify failed: %s pulls through the mirror, but the mirror is not ready, so %s goes around it for real images: %s", e.name, e.name, text)
	case text != "ok":
		fmt.Fprintf(w, "verify: the mirror is %s\n", text)
	}
	fmt.Fprintf(w, "verify: ok: %s pulls through the mirror\n", e.name)
	return nil
}

// askReady asks the mirror's /readyz: ready is false when it answers 503
// (pulls would fail or go around the mirror); text is its answer on one
// line.
func askReady(ctx context.Context, admin string, timeout time.Duration) (ready bool, text string, err error) {
	t, err := mirrorTransport("", false)
	if err != nil {
		return false, "", err
	}
	defer t.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/readyz", nil)
	if err != nil {
		return false, "", err
	}
	resp, err := (&http.Client{Transport: t, Timeout: timeout}).Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	text = strings.Join(strings.Fields(string(body)), " ")
	switch resp.StatusCode {
	case http.StatusOK:
		return true, text, nil
	case http.StatusServiceUnavailable:
		return false, text, nil
	}
	return false, "", fmt.Errorf("GET /readyz: %s", resp.Status)
}

func engineWords(e fleet.Engine) string {
	if e.Version == "" {
		return e.Name
	}
	return e.Name + " " + e.Version
}

// freshCanaryTag is a canary tag of 64 random bits: no engine has it
// cached, and no one else can guess it.
func freshCanaryTag() string {
	var nonce [8]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails
	return canary.Tag(nonce)
}

// askCanary asks the admin API whether tag arrived. When the pull
// succeeded it asks a few times over a second or two: the mirror records a
// request just after answering it.
func askCanary(ctx context.Context, adminURL, tag string, pulled bool, timeout time.Duration) (admin.CanaryAnswer, error) {
	t, err := mirrorTransport("", false)
	if err != nil {
		return admin.CanaryAnswer{}, err
	}
	defer t.CloseIdleConnections()
	client := &http.Client{Transport: t, Timeout: timeout}
	tries := 1
	if pulled {
		tries = 10
	}
	var ans admin.CanaryAnswer
	for i := range tries {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/fleet/canary?tag="+url.QueryEscape(tag), nil)
		if err != nil {
			return ans, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return ans, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return ans, fmt.Errorf("GET /fleet/canary: %s: %s", resp.Status, strings.TrimSpace(string(body)))
		}
		if err := json.Unmarshal(body, &ans); err != nil {
			return ans, fmt.Errorf("GET /fleet/canary: %w", err)
		}
		if ans.Arrived {
			break
		}
	}
	return ans, nil
}

// dockerCanary pulls and removes through dockerd's API at host, so
// dockerd's own registry-mirrors decide where the pull goes.
func dockerCanary(host string) canaryEngine {
	return canaryEngine{name: "dockerd", arrivesAs: []string{fleet.Dockerd, fleet.Containerd}, // containerd: dockerd's containerd image store
		pull: func(ctx context.Context, ref string) error {
			name, tag, _ := strings.Cut(ref, ":")
			q := url.Values{"fromImage": {name}, "tag": {tag}}
			return dockerAPI(ctx, host, http.MethodPost, "/images/create?"+q.Encode())
		},
		remove: func(ctx context.Context, ref string) error {
			return dockerAPI(ctx, host, http.MethodDelete, "/images/"+ref)
		}}
}

// dockerAPI calls dockerd and reads its answer: a stream of JSON messages
// for a pull, whose "error" says a pull failed though the status is 200.
func dockerAPI(ctx context.Context, host, method, path string) error {
	client, base, err := dockerClient(host)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("dockerd: %w", err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, 16<<20))
	var msg struct{ Message, Error string }
	for {
		var m struct{ Message, Error string }
		if err := dec.Decode(&m); err != nil {
			break
		}
		if m.Error != "" || m.Message != "" {
			msg = m
		}
		if m.Error != "" {
			break
		}
	}
	switch {
	case resp.StatusCode >= 300:
		return fmt.Errorf("dockerd: %s: %s", resp.Status, msg.Message+msg.Error)
	case msg.Error != "":
		return fmt.Errorf("dockerd: %s", msg.Error)
	}
	return nil
}

// commandCanary pulls and removes with an engine's command line.
func commandCanary(name string, arrivesAs []string, pull, remove func(ref string) []string) canaryEngine {
	run := func(ctx context.Context, args []string) error {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, exec.ErrNotFound):
			return fmt.Errorf("%s: %w", args[0], err)
		}
		return fmt.Errorf("%s (%s %s: %v)", lastLine(out.String()), filepath.Base(args[0]), strings.Join(args[1:], " "), err)
	}
	return canaryEngine{name: name, arrivesAs: arrivesAs,
		pull:   func(ctx context.Context, ref string) error { return run(ctx, pull(ref)) },
		remove: func(ctx context.Context, ref string) error { return run(ctx, remove(ref)) }}
}

// lastLine is an engine's last line of output, where ctr and podman say
// why they failed, cut to a readable length.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if len(last) > 1000 {
		last = last[:1000] + "…"
	}
	return last
}
