package mirror

import (
	"net/http"
	"testing"
	"testing/synctest"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/oci"
)

// TestHoldings: content cached for one repository is served under another
// only when that repository is known to hold it: a manifest of it names
// the digest, or the upstream confirms it with a HEAD under that name
// (recorded, so it is asked once). Knowing a digest unlocks nothing.
func TestHoldings(t *testing.T) {
	t.Parallel()
	type pulled struct {
		app   image // team/app:1, pulled and its first layer cached
		other image // team/other:1 (other bytes), never pulled
	}
	tests := []struct {
		name     string
		repo     string                       // asked under
		manifest bool                         // a manifest by digest, else a blob
		digest   func(p pulled) digest.Digest // what is asked
		want     oci.ErrorCode                // "" served
		cache    CacheResult                  // when served
		heads    int                          // upstream HEADs of it under repo
		held     bool                         // recorded as held by repo after
	}{
		{"a layer of the repository's own manifest", "team/app", false, func(p pulled) digest.Digest { return p.app.blobs[1] }, "", CacheHit, 0, true},
		{"a layer the upstream also holds under another repository", "team/copy", false, func(p pulled) digest.Digest { return p.app.blobs[1] }, "", CacheHit, 1, true},
		{"a cached layer under a repository that does not hold it", "team/other", false, func(p pulled) digest.Digest { return p.app.blobs[1] }, oci.ErrBlobUnknown, "", 1, false},
		{"a digest nobody holds", "team/app", false, func(pulled) digest.Digest { return digest.FromString("nobody") }, oci.ErrBlobUnknown, "", 1, false},
		{"a manifest by digest the upstream also holds under another repository", "team/copy", true, func(p pulled) digest.Digest { return p.app.digest }, "", CacheHit, 1, true},
		{"a cached manifest under a repository that does not hold it", "team/other", true, func(p pulled) digest.Digest { return p.app.digest }, oci.ErrManifestUnknown, "", 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, []upstreamSpec{{name: "a.test"}})
				up := e.ups["a.test"]
				var p pulled
				p.app = up.push(t, e.net, "team/app", "1", 1)
				if cp := up.push(t, e.net, "team/copy", "1", 1); cp.digest != p.app.digest { // the same image
					t.Fatal("seed 1 made two images")
				}
				p.other = up.push(t, e.net, "team/other", "1", 2)
				req := Request{Upstream: "a.test", Repo: "team/app"}
				if _, _, err := e.manifest(t, req, "1"); err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.blob(t, req, p.app.blobs[1]); err != nil {
					t.Fatal(err)
				}
				e.settle()
				up.reset()

				d := tt.digest(p)
				req.Repo = tt.repo
				ask := func() (CacheResult, error) {
					if tt.manifest {
						_, out, err := e.manifest(t, req, d.String())
						return out.Cache, err
					}
					_, out, err := e.blob(t, req, d)
					return out.Cache, err
				}
				cache, err := ask()
				if code(err) != tt.want || (tt.want == "" && err != nil) {
					t.Fatalf("asked %s under %s: %v, want %q", d, tt.repo, err, tt.want)
				}
				if tt.want == "" && cache != tt.cache {
					t.Errorf("cache %q, want %q", cache, tt.cache)
				}
				kind := "blobs"
				if tt.manifest {
					kind = "manifests"
				}
				if n := up.count(http.MethodHead, kind, tt.repo, d.String()); n != tt.heads {
					t.Errorf("the upstream was asked %d HEADs under %s, want %d", n, tt.repo, tt.heads)
				}
				if n := up.count(http.MethodGet, kind, tt.repo, d.String()); n != 0 {
					t.Errorf("the upstream was asked %d GETs under %s: the cached copy was not used", n, tt.repo)
				}
				if held, err := e.index.Holds(t.Context(), "a.test", tt.repo, d); err != nil || held != tt.held {
					t.Errorf("index: %s holds %s = %v %v, want %v", tt.repo, d, held, err, tt.held)
				}
				if tt.want == "" { // asked again: the recorded holding answers
					if _, err := ask(); err != nil {
						t.Fatal(err)
					}
					if n := up.count(http.MethodHead, kind, tt.repo, d.String()); n != tt.heads {
						t.Errorf("asked again: %d HEADs, want still %d", n, tt.heads)
					}
				}
			})
		})
	}
}
