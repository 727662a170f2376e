package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/testenv"
)

// TestCredentialHelperRotation: an upstream whose credentials come from a
// real credential helper (a script on PATH, counting its runs) keeps
// serving private repositories of the Docker Hub stand-in across a
// rotation (the helper's secret and the hub's password change together;
// after the realm's 401 the helper runs again; SIGHUP makes it run again
// too). A helper that then prints garbage is a 503 naming the upstream and
// the helper, and the upstream's state and reason in /status, with the
// secret in no answer, status or log.
func TestCredentialHelperRotation(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.SetPrivate(imgs.Single.Repo, true)
	hub.SetPrivate(imgs.ManifestList.Repo, true)
	hub.SetCredentials("robot", "pw-1")
	hub.SetTokenTTL(time.Second)
	ch := testenv.NewCredHelper(t, "test", "robot", "pw-1")
	cfg := filepath.Join(t.TempDir(), "regcache.yaml")
	yaml := fmt.Sprintf("upstreams:\n  - name: docker.io\n    url: %s\n    credential_helper: test\n    max_bandwidth: 64MiB/s\n    max_connections: 8\n    fill_connections: 3\n", hub.URL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	m := startMirrorLogged(t, map[string]string{"REGCACHE_CONFIG": cfg, "REGCACHE_FRESHNESS": "1ms", "REGCACHE_PRIVATE": "allow"})
	ref := m.Host + "/" + strings.TrimPrefix(imgs.Single.Repo, "library/") + ":" + imgs.Single.Tag
	if _, err := tryCrane(ref); err != nil {
		t.Fatalf("first pull: %v", err)
	}
	if ch.Runs() != 1 || ch.Server() != hub.Host {
		t.Fatalf("helper ran %d times reading %q, want once reading %s", ch.Runs(), ch.Server(), hub.Host)
	}
	if got := m.App.Status().Settings["upstreams[0].max_bandwidth"]; got != "67108864" {
		t.Errorf("upstreams[0].max_bandwidth in effect: %q, want 67108864", got)
	}
	if got := m.App.Status().Settings["upstreams[0].max_connections"]; got != "8" {
		t.Errorf("upstreams[0].max_connections in effect: %q, want 8", got)
	}
	if got := m.App.Status().Settings["upstreams[0].fill_connections"]; got != "3" {
		t.Errorf("upstreams[0].fill_connections in effect: %q, want 3", got)
	}

	ch.Set(t, testenv.CredAnswer, "robot", "pw-2")
	hub.SetCredentials("robot", "pw-2")
	time.Sleep(2100 * time.Millisecond) // the hub's token expires; the answer is older than the 2s that allow a run
	hub.ResetCounters()
	if _, err := tryCrane(ref); err != nil {
		t.Fatalf("pull after rotation: %v", err)
	}
	if hub.CountRef("", testenv.KindManifest, imgs.Single.Tag) == 0 {
		t.Fatal("the pull after rotation did not ask the hub: the test proves nothing")
	}
	if ch.Runs() != 2 {
		t.Fatalf("helper ran %d times, want 2 (again after the realm refused the old password)", ch.Runs())
	}

	// SIGHUP drops the program's answer: it runs at the next request,
	// though the upstream refused nothing.
	reloaded, _, err := m.App.Reload(m.App.config())
	if err != nil || !strings.Contains(strings.Join(reloaded, ";"), "credential program") {
		t.Fatalf("reload: %q, %v; want the credential program named", reloaded, err)
	}
	if _, err := tryCrane(ref); err != nil {
		t.Fatalf("pull after SIGHUP: %v", err)
	}
	if ch.Runs() != 3 {
		t.Fatalf("helper ran %d times, want 3 (again after SIGHUP)", ch.Runs())
	}

	const secret = "pw-3-hunter2"
	ch.Set(t, testenv.CredGarbage, "robot", secret)
	hub.SetCredentials("robot", secret)
	time.Sleep(2100 * time.Millisecond)
	resp, err := http.Get("http://" + m.Host + "/v2/" + strings.TrimPrefix(imgs.ManifestList.Repo, "library/") + "/manifests/" + imgs.ManifestList.Tag)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "upstream docker.io") ||
		!strings.Contains(string(body), "credential helper docker-credential-test") {
		t.Fatalf("with a garbage-printing helper: %d %s, want a 503 naming the upstream and the helper", resp.StatusCode, body)
	}
	st := m.App.Status()
	u := st.Upstreams[0]
	// The credentials cannot be had: the upstream's credentials state
	// (pulls fail, /readyz is 503), with the program's failure as the reason.
	if u.State != admin.StateCredsRejected || !strings.Contains(u.Reason, "credential helper docker-credential-test: printed something that is not the credential JSON") {
		t.Fatalf("status: state %q, reason %q; want the helper's failure", u.State, u.Reason)
	}
	js, _ := json.Marshal(st)
	for what, s := range map[string]string{"the answer": string(body), "/status": string(js), "the log": m.log()} {
		for _, pw := range []string{secret, "pw-1", "pw-2"} {
			if strings.Contains(s, pw) {
				t.Errorf("%s holds the secret %s", what, pw)
			}
		}
	}
	if !strings.Contains(m.log(), "credential helper docker-credential-test") {
		t.Errorf("the log does not name the helper's failure:\n%s", m.log())
	}
}
