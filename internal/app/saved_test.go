package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/regcache/regcache/internal/testenv"
)

// enginePull pulls a manifest the way dockerd does: HEAD of the tag (which
// Docker Hub does not count), then GET by the digest it gave.
func enginePull(t *testing.T, host string, img testenv.Image) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+host+"/v2/"+img.Repo+"/manifests/"+img.Tag, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != string(img.Digest) {
		t.Fatalf("HEAD %s:%s: %d %s", img.Repo, img.Tag, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if code, _ := fetch(t, host, "/v2/"+img.Repo+"/manifests/"+string(img.Digest)); code != 200 {
		t.Fatalf("GET by digest: %d", code)
	}
}

// TestPullsSavedEngine: "pulls saved" counts only manifest GETs a client
// sent that the upstream's limit would have counted and did not. An
// engine's first pull (HEAD of the tag, free; the mirror's GET of it,
// counted; the engine's GET by digest, from the cache) saves nothing;
// each pull after it (a HEAD revalidation, a GET from the cache) saves
// one. At every step, saved = the clients' manifest GETs − the stand-in's.
func TestPullsSavedEngine(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	m := startMirror(t, map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io",
		"REGCACHE_FRESHNESS": "1ms", "REGCACHE_PREFETCH": "false"})
	img := imgs.Single
	for pull := 1; pull <= 3; pull++ {
		enginePull(t, m.Host, img)
		time.Sleep(5 * time.Millisecond) // past the freshness window: the next pull revalidates
		var hubGets int64                // the stand-in's counted pulls: manifest GETs it answered (a 401 challenge is not one)
		for _, r := range hub.Requests() {
			if r.Method == http.MethodGet && r.Kind == testenv.KindManifest && r.Status == 200 {
				hubGets++
			}
		}
		want := int64(pull) - hubGets
		var got int64
		waitFor(t, "the pull counted", func() bool {
			st := m.App.Status()
			got = st.Requests.PullsSaved
			return st.Requests.ByResult["hit"]+st.Requests.ByResult["miss"] >= int64(2*pull)
		})
		if hubGets != 1 || got != want || got != int64(pull-1) {
			t.Errorf("after pull %d: %d saved, the stand-in counted %d manifest GETs for %d client GETs (want %d saved)", pull, got, hubGets, pull, pull-1)
		}
	}
}
