package app

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/ui"
)

// waitBlobs waits until the index holds at least n blobs (commits land
// after the last byte is served).
func waitBlobs(t *testing.T, a *App, n int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for a.evictor.Totals().Blobs < n {
		if time.Now().After(deadline) {
			t.Fatalf("the index holds %d blobs, want %d", a.evictor.Totals().Blobs, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func layerDigests(t *testing.T, img v1.Image) []digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, digest.Digest(d.String()))
	}
	return out
}

// TestEvictSharedLayers: two images share their base layers; over the cap
// the older image goes, but only what it alone holds: the newer one stays
// whole and pulls with the upstream gone.
func TestEvictSharedLayers(t *testing.T) {
	up := httptest.NewServer(ggcrregistry.New())
	defer up.Close()
	upHost := strings.TrimPrefix(up.URL, "http://")
	base, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]v1.Image{}
	for _, tag := range []string{"old", "new"} {
		own, err := random.Layer(256<<10, "application/vnd.docker.image.rootfs.diff.tar.gzip")
		if err != nil {
			t.Fatal(err)
		}
		img, err := mutate.AppendLayers(base, own)
		if err != nil {
			t.Fatal(err)
		}
		ref, _ := name.ParseReference(upHost + "/team/app:" + tag)
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		images[tag] = img
	}
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_PREFETCH": "false"})
	for _, tag := range []string{"old", "new"} {
		img, err := crane.Pull(m.Host+"/team/app:"+tag, crane.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(img); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct access times
	}
	waitBlobs(t, m.App, 6) // 2 shared layers, 2 own layers, 2 configs
	total := m.App.evictor.Totals().Bytes()
	// Room for one image and a little: the old one (least recently used)
	// must go, and only its own layer, config and manifest with it.
	m.App.evictor.SetMaxSize(total - 100<<10) // low water 90 %: room for the new image, not both
	if _, _, err := m.App.evictor.Evict(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, d := range layerDigests(t, images["new"]) {
		if _, err := m.App.store.Stat(t.Context(), d); err != nil {
			t.Errorf("layer %s of the kept image was evicted", d)
		}
	}
	oldOwn := layerDigests(t, images["old"])[2]
	if _, err := m.App.store.Stat(t.Context(), oldOwn); err == nil {
		t.Errorf("the evicted image's own layer %s is still stored", oldOwn)
	}
	if got := m.App.evictor.Totals().Bytes(); got > m.App.evictor.MaxSize() {
		t.Errorf("%d bytes stored over a cap of %d", got, m.App.evictor.MaxSize())
	}
	up.Close() // the kept image is whole: it pulls with no upstream
	img, err := crane.Pull(m.Host+"/team/app:new", crane.Insecure)
	if err != nil {
		t.Fatalf("pull of the kept image with the upstream gone: %v", err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the kept image is not whole: %v", err)
	}
}

// TestEvictDuringLargePull: a client reading a stored blob when eviction
// deletes it gets every byte right; a blob being filled is not evicted and
// its pull completes too.
func TestEvictDuringLargePull(t *testing.T) {
	const size = 128 << 20
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t, testenv.WithBigImage(size))
	big := *imgs.Big
	layer := big.Layers[0]
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_PREFETCH": "false"})
	url := "http://" + m.Host + "/v2/" + big.Repo + "/blobs/" + string(layer.Digest)
	if s, _, err := get(t, "http://"+m.Host+"/v2/"+big.Repo+"/manifests/"+big.Tag); s != 200 || err != nil {
		t.Fatalf("manifest: %d %v", s, err)
	}
	pull := func(during func()) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		if _, err := io.CopyN(h, resp.Body, 8<<20); err != nil {
			t.Fatal(err)
		}
		during()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			t.Fatalf("the pull failed after the eviction: %v", err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != string(layer.Digest) || n+8<<20 != layer.Size {
			t.Fatalf("pulled %d bytes hashing to %s, want %d of %s", n+8<<20, got, layer.Size, layer.Digest)
		}
	}
	// Cold: the blob is being filled while everything else is evicted.
	pull(func() {
		m.App.evictor.SetMaxSize(1)
		if _, _, err := m.App.evictor.Evict(t.Context()); err != nil {
			t.Fatal(err)
		}
		m.App.evictor.SetMaxSize(0)
	})
	waitBlobs(t, m.App, 1)
	// Warm: the stored file is evicted under the reader.
	pull(func() {
		m.App.evictor.SetMaxSize(1)
		if n, _, err := m.App.evictor.Evict(t.Context()); err != nil || n == 0 {
			t.Fatalf("evicted %d files (%v)", n, err)
		}
		if _, err := m.App.store.Stat(t.Context(), layer.Digest); err == nil {
			t.Fatal("the blob is still stored after its eviction")
		}
	})
}

// TestScrub: the scrub runs as the configuration says, with nothing set
// by hand. storage.scrub_interval 0 keeps it off; a SIGHUP that sets an
// interval starts it (a reload applies it live); it then finds a byte
// flipped behind the mirror's back within a pass, quarantines the file,
// drops it from the index, reports it, and the next request fetches good
// bytes again. The pace itself is tested in internal/cache.
func TestScrub(t *testing.T) {
	up := httptest.NewServer(ggcrregistry.New())
	defer up.Close()
	img, err := random.Image(1<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	upHost := strings.TrimPrefix(up.URL, "http://")
	ref, _ := name.ParseReference(upHost + "/team/app:v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": up.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_PREFETCH": "false", "REGCACHE_SCRUB_INTERVAL": "0", "REGCACHE_SCRUB_RATE": "1GiB"})
	if _, err := crane.Pull(m.Host+"/team/app:v1", crane.Insecure); err != nil {
		t.Fatal(err)
	}
	pulled, _ := crane.Pull(m.Host+"/team/app:v1", crane.Insecure)
	if err := validate.Image(pulled); err != nil {
		t.Fatal(err)
	}
	waitBlobs(t, m.App, 4)
	a := m.App
	time.Sleep(200 * time.Millisecond)
	if st := a.scrub.Status(); st.Enabled || st.Pass != 0 {
		t.Fatalf("storage.scrub_interval 0: the scrub ran: %+v", st)
	}

	victim := layerDigests(t, img)[1]
	p := filepath.Join(m.Data, "blobs", "sha256", victim.Encoded()[:2], victim.Encoded())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 1
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	next := a.config()
	next.Storage.ScrubInterval = 2 * time.Second
	reloaded, _, err := a.Reload(next)
	if err != nil || !slices.Contains(reloaded, "storage.scrub_interval") {
		t.Fatalf("reload of storage.scrub_interval: reloaded %v, %v", reloaded, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var st ScrubStatus
	for st = a.scrub.Status(); len(st.Damaged) == 0 && time.Now().Before(deadline); st = a.scrub.Status() {
		time.Sleep(50 * time.Millisecond)
	}
	if len(st.Damaged) != 1 || st.Damaged[0] != victim || !st.Enabled || st.Interval != 2*time.Second {
		t.Fatalf("scrub status %+v, want %s damaged", st, victim)
	}
	if _, err := os.Stat(filepath.Join(m.Data, "quarantine", "sha256-"+victim.Encoded())); err != nil {
		t.Errorf("not quarantined: %v", err)
	}
	w := httptest.NewRecorder()
	a.AdminHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/dashboard.json", nil))
	var dash ui.Snapshot
	if err := json.Unmarshal(w.Body.Bytes(), &dash); err != nil {
		t.Fatal(err)
	}
	if got := dash.Cache.Scrub; !strings.Contains(got, "1 damaged files set aside") {
		t.Errorf("the dashboard's scrub line: %q", got)
	}
	mf, err := a.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range mf {
		if f.GetName() == "regcache_scrub_damaged_total" {
			found = f.GetMetric()[0].GetCounter().GetValue() == 1
		}
	}
	if !found {
		t.Error("regcache_scrub_damaged_total is not 1")
	}
	if _, ok, _ := a.index.Blob(t.Context(), victim); ok {
		t.Error("the damaged blob is still indexed")
	}
	s, body, err := get(t, "http://"+m.Host+"/v2/team/app/blobs/"+string(victim))
	if err != nil || s != 200 || digest.FromBytes(body) != victim {
		t.Errorf("the damaged blob after the scrub: %d %v, body hashes to %s", s, err, digest.FromBytes(body))
	}
}

// TestMaxAge: storage.max_age with an injected clock evicts what was not
// used for that long, but not the only copy of a tag whose upstream is
// down (while no cap needs the room).
func TestMaxAge(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_PREFETCH": "false", "REGCACHE_MAX_AGE": "1h"})
	single := imgs.Single
	pullCrane(t, m.Host+"/"+single.Repo+":"+single.Tag)
	waitBlobs(t, m.App, int64(len(single.Blobs())))
	var later atomic.Int64
	later.Store(time.Now().Add(30 * time.Minute).UnixNano())
	m.App.setClock(func() time.Time { return time.Unix(0, later.Load()) })
	if n, _, err := m.App.evictor.Evict(t.Context()); n != 0 || err != nil {
		t.Fatalf("evicted %d files 30 minutes in with max_age 1h (%v)", n, err)
	}
	// The upstream goes down: two hours later the content stays.
	hub.Down()
	for range 6 {
		m.App.upstreams[0].Client.Ping(t.Context())
	}
	later.Store(time.Now().Add(2 * time.Hour).UnixNano())
	if n, _, err := m.App.evictor.Evict(t.Context()); n != 0 || err != nil {
		t.Fatalf("max_age evicted %d files of a tag whose upstream is down (%v)", n, err)
	}
	hub.Up()
	for i := 0; m.App.upstreams[0].Client.Health().Down && i < 200; i++ {
		m.App.upstreams[0].Client.Ping(t.Context())
		time.Sleep(10 * time.Millisecond)
	}
	if m.App.upstreams[0].Client.Health().Down {
		t.Fatal("the upstream stays down after it came back")
	}
	if n, _, err := m.App.evictor.Evict(t.Context()); n != len(single.Blobs())+1 || err != nil {
		t.Fatalf("evicted %d files two hours in with max_age 1h, want the image's %d (%v)", n, len(single.Blobs())+1, err)
	}
	hub.ResetCounters()
	pullCrane(t, m.Host+"/"+single.Repo+":"+single.Tag)
	if n := hub.Count("GET", testenv.KindBlob) + hub.Count("GET", testenv.KindCDN); n == 0 {
		t.Error("the evicted image was not fetched again")
	}
}

// TestCacheAPIAccess: the admin cache API takes changes as POSTs only,
// from loopback, or with the token when one is configured; listings name
// repositories only to those callers.
func TestCacheAPIAccess(t *testing.T) {
	hub := testenv.NewHub(t)
	for _, token := range []string{"", "s3cret-admin-token-1"} {
		env := map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io"}
		if token != "" {
			env["REGCACHE_ADMIN_TOKEN"] = token
		}
		m := startMirror(t, env)
		h := m.App.AdminHandler()
		call := func(method, path, from, auth string) int {
			r := httptest.NewRequest(method, path, strings.NewReader(`{"toSize":1,"dryRun":true}`))
			r.RemoteAddr = from
			r.Header.Set("Content-Type", "application/json")
			if auth != "" {
				r.Header.Set("Authorization", "Bearer "+auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			return w.Code
		}
		local, remote := "127.0.0.1:4000", "192.0.2.7:4000"
		tests := []struct {
			method, path, from, auth string
			want                     int
		}{
			{"GET", "/cache/prune", local, token, http.StatusMethodNotAllowed},
			{"POST", "/cache/prune", remote, "", http.StatusForbidden},
			{"POST", "/cache/prune", remote, "wrong", http.StatusForbidden},
			{"GET", "/cache/ls", remote, "", http.StatusForbidden},
			{"GET", "/cache/stats", remote, "", http.StatusOK},
		}
		if token == "" {
			tests = append(tests, struct {
				method, path, from, auth string
				want                     int
			}{"POST", "/cache/prune", local, "", http.StatusOK}, struct {
				method, path, from, auth string
				want                     int
			}{"GET", "/cache/ls", local, "", http.StatusOK})
		} else {
			tests = append(tests, struct {
				method, path, from, auth string
				want                     int
			}{"POST", "/cache/prune", local, "", http.StatusForbidden}, struct {
				method, path, from, auth string
				want                     int
			}{"POST", "/cache/prune", remote, token, http.StatusOK})
		}
		for _, tt := range tests {
			if got := call(tt.method, tt.path, tt.from, tt.auth); got != tt.want {
				t.Errorf("token %q: %s %s from %s with %q: %d, want %d", token, tt.method, tt.path, tt.from, tt.auth, got, tt.want)
			}
		}
	}
}
