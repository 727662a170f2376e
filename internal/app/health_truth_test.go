package app

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/regcache/regcache/internal/admin"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// surfaces is what each health surface says at one moment.
type surfaces struct {
	status  admin.Status
	readyz  int
	readyzB string
	dash    ui.Snapshot
	metrics string
}

func readSurfaces(t *testing.T, h http.Handler) surfaces {
	t.Helper()
	var s surfaces
	_, body := adminGet(t, h, "/status", "")
	if err := json.Unmarshal([]byte(body), &s.status); err != nil {
		t.Fatal(err)
	}
	s.readyz, s.readyzB = adminGet(t, h, "/readyz", "")
	_, body = adminGet(t, h, "/dashboard.json", "")
	if err := json.Unmarshal([]byte(body), &s.dash); err != nil {
		t.Fatal(err)
	}
	_, s.metrics = adminGet(t, h, "/metrics", "")
	return s
}

// checkDegraded asserts that every surface shows the mirror degraded for
// reason, with want in the sentence.
func checkDegraded(t *testing.T, s surfaces, reason, want string) {
	t.Helper()
	i := slices.Index(s.status.Reasons, reason)
	if s.status.State != "degraded" || i < 0 || !strings.Contains(s.status.Degraded[i], want) {
		t.Errorf("/status: state %s, reasons %v, degraded %q; want %s saying %q", s.status.State, s.status.Reasons, s.status.Degraded, reason, want)
	}
	if s.readyz != http.StatusServiceUnavailable || !strings.Contains(s.readyzB, want) {
		t.Errorf("/readyz: %d %q, want 503 saying %q", s.readyz, s.readyzB, want)
	}
	if s.dash.State != "degraded" || !slices.ContainsFunc(s.dash.Degraded, func(d string) bool { return strings.Contains(d, want) }) {
		t.Errorf("dashboard: %s %q", s.dash.State, s.dash.Degraded)
	}
	if !strings.Contains(s.metrics, `regcache_degraded{reason="`+reason+`"} 1`) {
		t.Errorf("/metrics:\n%s", grepLines(s.metrics, "regcache_degraded"))
	}
}

// checkRecovered asserts that reason is gone from every surface.
func checkRecovered(t *testing.T, s surfaces, reason string) {
	t.Helper()
	if s.status.State != "healthy" || s.readyz != 200 || s.dash.State != "healthy" ||
		!strings.Contains(s.metrics, `regcache_degraded{reason="`+reason+`"} 0`) {
		t.Errorf("after the fix: status %s %q, readyz %d %q, dashboard %s, metrics\n%s",
			s.status.State, s.status.Degraded, s.readyz, s.readyzB, s.dash.State, grepLines(s.metrics, "regcache_degraded"))
	}
}

// TestWrongUpstreamToken: a mirror started with a password the Docker Hub
// stand-in's token endpoint refuses is degraded before any pull, in every
// surface (/status with the upstream credentials-rejected, /readyz 503,
// the dashboard, regcache_degraded and regcache_upstream_state), and heals
// once the password file is fixed, with no restart and no pull.
func TestWrongUpstreamToken(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.SetAuth(true)
	hub.SetCredentials("ci", "right-token")
	pwFile := filepath.Join(t.TempDir(), "hub-token")
	if err := os.WriteFile(pwFile, []byte("wrong-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_USERNAME": "ci", "REGCACHE_PASSWORD_FILE": pwFile, "REGCACHE_PROBE_INTERVAL": "100ms", "REGCACHE_PRIVATE": "allow"})
	adm := m.App.AdminHandler()
	waitFor(t, "the probe to judge the credentials", func() bool { return m.App.Status().Upstreams[0].State == admin.StateCredsRejected })
	s := readSurfaces(t, adm)
	checkDegraded(t, s, admin.ReasonCredentials, "docker.io: credentials rejected")
	if u := s.status.Upstreams[0]; !strings.Contains(u.Reason, "answered 401") || u.Since.IsZero() || !u.Health.Credentials.Rejected {
		t.Errorf("upstream status: %+v", u)
	}
	if !strings.Contains(s.metrics, `regcache_upstream_state{state="credentials_rejected",upstream="docker.io"} 1`) {
		t.Errorf("regcache_upstream_state:\n%s", grepLines(s.metrics, "regcache_upstream_state"))
	}
	for _, secret := range []string{"wrong-token", "right-token"} {
		if strings.Contains(s.readyzB+strings.Join(s.status.Degraded, " "), secret) {
			t.Errorf("the health surfaces show the password %q", secret)
		}
	}
	img := imgs.Single
	if code, _ := fetch(t, m.Host, "/v2/"+img.Repo+"/manifests/"+img.Tag); code == 200 {
		t.Fatal("a pull with refused credentials succeeded")
	}

	if err := os.WriteFile(pwFile, []byte("right-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the probe to see the fixed password", func() bool { return m.App.Status().State == "healthy" })
	checkRecovered(t, readSurfaces(t, adm), admin.ReasonCredentials)
	if code, _ := fetch(t, m.Host, "/v2/"+img.Repo+"/manifests/"+img.Tag); code != 200 {
		t.Fatalf("pull after the fix: %d", code)
	}
}

// TestAnonymousPrivateRepoIsNotACredentialFailure: an anonymous mirror
// asked for a repository the upstream keeps private gets a refusal, which
// is an answer about that repository: the mirror stays healthy.
func TestAnonymousPrivateRepoIsNotACredentialFailure(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	hub.SetAuth(true)
	hub.SetCredentials("ci", "right-token")
	img := imgs.Single
	hub.SetPrivate(img.Repo, true)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_PROBE_INTERVAL": "100ms"})
	if code, _ := fetch(t, m.Host, "/v2/"+img.Repo+"/manifests/"+img.Tag); code == 200 {
		t.Fatal("an anonymous pull of a private repository succeeded")
	}
	waitFor(t, "the probe", func() bool { return m.App.Status().Upstreams[0].State != admin.StateUnknown })
	if st := m.App.Status(); st.State != "healthy" || st.Upstreams[0].State != admin.StateUp {
		t.Errorf("anonymous mirror after a private repository's 401: %s %s %q", st.State, st.Upstreams[0].State, st.Degraded)
	}
}

// TestDiskFullDegraded: a cache disk filled by something else past the
// free-space floor makes the mirror degraded (disk_full), and so does a
// storage.max_size the disk can no longer reach (cap_unreachable); both
// clear when the space comes back.
func TestDiskFullDegraded(t *testing.T) {
	data := tmpfs(t, "16m")
	hub := testenv.NewHub(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data,
		"REGCACHE_MAX_SIZE": "12MiB"})
	adm := m.App.AdminHandler()
	if st := m.App.Status(); st.State != "healthy" {
		t.Fatalf("before filling the disk: %q", st.Degraded)
	}
	filler, err := os.Create(filepath.Join(data, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	if err := os.Truncate(filepath.Join(data, "filler"), mustSize(t, filepath.Join(data, "filler"))-512<<10); err != nil {
		t.Fatal(err)
	}
	s := readSurfaces(t, adm)
	checkDegraded(t, s, admin.ReasonDiskFull, "the cache disk is full")
	checkDegraded(t, s, admin.ReasonCapUnreached, "storage.max_size 12.0 MiB cannot be reached")

	os.Remove(filepath.Join(data, "filler"))
	s = readSurfaces(t, adm)
	checkRecovered(t, s, admin.ReasonDiskFull)
	checkRecovered(t, s, admin.ReasonCapUnreached)
}

// TestPercentCapOnSharedDisk: on a disk half full of other files, the
// default 80 % is applied to what the cache can use (its bytes plus the
// free space), not to the whole disk, so the cap is one the disk reaches
// and the mirror starts healthy; an absolute cap beyond it is reported.
func TestPercentCapOnSharedDisk(t *testing.T) {
	data := tmpfs(t, "16m")
	if err := os.WriteFile(filepath.Join(data, "other-files"), make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	hub := testenv.NewHub(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": filepath.Join(data, "a")})
	st := m.App.Status()
	if st.Cache.MaxBytes <= 0 || st.Cache.MaxBytes > 7<<20 || st.State != "healthy" {
		t.Errorf("default cap on a 16 MiB disk with 8 MiB of other files: %d bytes (want 80%% of about 8 MiB), %s %q", st.Cache.MaxBytes, st.State, st.Degraded)
	}
	if !strings.Contains(m.App.CapSummary(), "80% of the") || !strings.Contains(m.App.CapSummary(), "the cache can use") {
		t.Errorf("cap summary: %q", m.App.CapSummary())
	}

	abs := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": filepath.Join(data, "b"),
		"REGCACHE_MAX_SIZE": "12MiB"})
	checkDegraded(t, readSurfaces(t, abs.App.AdminHandler()), admin.ReasonCapUnreached, "storage.max_size 12.0 MiB cannot be reached")
}
