package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/config"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// pull GETs a manifest through the mirror: its status and body.
func pull(t *testing.T, host, repo, ref string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPolicyReload: a policy_file changed and applied by SIGHUP decides
// the next pull of a digest allowed before (lazily, with no restart);
// the denial is a JSON audit line, a metric by decision and rule, and a
// recent denial in /status; the settings show the policy in effect.
func TestPolicyReload(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	file := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - match: docker.io/library/*\n    allow: true\n")
	env := map[string]string{"REGCACHE_POLICY_FILE": file, "REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_PREFETCH": "false"}
	m := startMirrorLogged(t, env)
	if code, body := pull(t, m.Host, imgs.Single.Repo, "latest"); code != 200 {
		t.Fatalf("allowed: %d %s", code, body)
	}
	if got := m.App.settingsInEffect()["policy"]; got != "enforce, 1 rules" {
		t.Errorf("settings: policy %q", got)
	}

	write("rules:\n  - match: docker.io/library/single\n    deny: true\n  - match: docker.io/library/*\n    allow: true\n")
	env["REGCACHE_DATA"] = m.Data
	next, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := env[k]
		if k == "REGCACHE_ADMIN_ADDR" {
			return "", true
		}
		return v, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	reloaded, _, err := m.App.Reload(next)
	if err != nil || !slices.Contains(reloaded, "policy") {
		t.Fatalf("reload: %v, %v", reloaded, err)
	}
	code, body := pull(t, m.Host, imgs.Single.Repo, "latest")
	if code != http.StatusForbidden || !strings.Contains(body, `"code":"DENIED"`) || !strings.Contains(body, "policy.rules[0] docker.io/library/single") {
		t.Errorf("after the reload: %d %s, want 403 DENIED naming the rule", code, body)
	}
	if code, body := pull(t, m.Host, imgs.ManifestList.Repo, "latest"); code != 200 {
		t.Errorf("another repository after the reload: %d %s", code, body)
	}
	logs := m.logs.String()
	if !strings.Contains(logs, `"msg":"pull policy decision","audit":"policy"`) || !strings.Contains(logs, `"decision":"deny","rule":"policy.rules[0] docker.io/library/single"`) {
		t.Errorf("no audit line for the denial:\n%s", logs)
	}
	st := m.App.Status()
	if st.Policy == nil || len(st.Policy.Denials) != 1 || st.Policy.Denials[0].Repository != imgs.Single.Repo {
		t.Errorf("/status policy: %+v", st.Policy)
	}
	// The dashboard's card: the denial for an asker who may see private
	// names (loopback, no admin token), none for another host.
	for _, tt := range []struct {
		remote string
		want   int
	}{{"127.0.0.1:1234", 1}, {"192.0.2.9:1234", 0}} {
		req := httptest.NewRequest(http.MethodGet, ui.PathData, nil)
		req.RemoteAddr = tt.remote
		w := httptest.NewRecorder()
		m.App.AdminHandler().ServeHTTP(w, req)
		var snap ui.Snapshot
		if err := json.Unmarshal(w.Body.Bytes(), &snap); err != nil {
			t.Fatalf("dashboard data: %v %s", err, w.Body)
		}
		if snap.Policy == nil || snap.Policy.Mode != "enforce" || len(snap.Policy.Denials) != tt.want ||
			(tt.want == 1 && snap.Policy.Denials[0].Rule != "policy.rules[0] docker.io/library/single") {
			t.Errorf("dashboard policy card from %s: %+v", tt.remote, snap.Policy)
		}
	}
	mf, err := m.App.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range mf {
		if f.GetName() != "regcache_policy_decisions_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range mt.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["decision"] == "deny" && labels["rule"] == "rules[0]" && mt.GetCounter().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Error("regcache_policy_decisions_total{decision=deny,rule=rules[0]} is not 1")
	}
}
