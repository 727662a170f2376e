package mirror

import (
	"net/http"
	"testing"
	"testing/synctest"

	"github.com/regcache/regcache/internal/oci"
)

// TestFallbacks: while a.test fails as down, 5xx or rate limited, the
// member of its chain answers: tags only when trusted for tags, content by
// digest always (it is checked). What the member showed is recorded as
// the member's holdings, never a.test's. a.test's 401, 403 and 404 are
// answers, not outages: the member is not asked.
func TestFallbacks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		trusted        bool
		manifests      int    // a.test's status for manifest requests (0: serves)
		blobs          int    // a.test's status for blob requests
		ask            string // "tag", "digest" or "blob"
		want           oci.ErrorCode
		member         bool // the member answered (and holds what it showed)
		memberManifest int  // manifest requests the member got
	}{
		{"down: a trusted member gives the tag", true, http.StatusServiceUnavailable, 0, "tag", "", true, 1},
		{"rate limited: a trusted member gives the tag", true, http.StatusTooManyRequests, 0, "tag", "", true, 1},
		{"down: an untrusted member gives no tag", false, http.StatusServiceUnavailable, 0, "tag", oci.ErrUnavailable, false, 0},
		{"down: an untrusted member gives content by digest", false, http.StatusServiceUnavailable, 0, "digest", "", true, 1},
		{"blobs down: the member gives the layer", false, 0, http.StatusServiceUnavailable, "blob", "", true, 0},
		{"401 is an answer", true, http.StatusUnauthorized, 0, "tag", oci.ErrDenied, false, 0},
		{"403 is an answer", true, http.StatusForbidden, 0, "tag", oci.ErrDenied, false, 0},
		{"404 is an answer", true, http.StatusNotFound, 0, "tag", oci.ErrManifestUnknown, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, []upstreamSpec{{name: "a.test", fallback: []string{"m.test"}}, {name: "m.test", trustedTags: tt.trusted}})
				a, m := e.ups["a.test"], e.ups["m.test"]
				app := a.push(t, e.net, "team/app", "1", 1)
				m.push(t, e.net, "team/app", "1", 1)
				req := Request{Upstream: "a.test", Repo: "team/app"}
				if tt.ask == "blob" { // a.test gave the manifest
					if _, _, err := e.manifest(t, req, "1"); err != nil {
						t.Fatal(err)
					}
				}
				a.setFail("manifests", tt.manifests)
				a.setFail("blobs", tt.blobs)
				m.reset()

				d := app.digest
				var err error
				switch tt.ask {
				case "tag":
					_, _, err = e.manifest(t, req, "1")
				case "digest":
					_, _, err = e.manifest(t, req, app.digest.String())
				case "blob":
					d = app.blobs[1]
					_, _, err = e.blob(t, req, d)
					e.settle()
				}
				if code(err) != tt.want || (tt.want == "" && err != nil) {
					t.Fatalf("%s with a.test answering %d/%d: %v, want %q", tt.ask, tt.manifests, tt.blobs, err, tt.want)
				}
				if n := m.count(http.MethodGet, "manifests", "", "") + m.count(http.MethodHead, "manifests", "", ""); n != tt.memberManifest {
					t.Errorf("the member got %d manifest requests, want %d", n, tt.memberManifest)
				}
				if held, _ := e.index.Holds(t.Context(), "m.test", "team/app", d); held != tt.member && tt.ask != "blob" {
					t.Errorf("the member recorded as holding %s: %v, want %v", d, held, tt.member)
				}
				if tt.ask != "blob" {
					if held, _ := e.index.Holds(t.Context(), "a.test", "team/app", d); held {
						t.Errorf("a.test recorded as holding %s, which only the member showed", d)
					}
				}
				if tt.ask == "blob" {
					if origin, _ := e.index.HasOrigin(t.Context(), "m.test", d); !origin {
						t.Errorf("the member that served the layer's bytes is not recorded as their origin")
					}
				}
				if tt.ask == "tag" && tt.member {
					if te, ok, _ := e.index.Tag(t.Context(), "a.test", "team/app", "1"); !ok || te.Source != "m.test" || te.Digest != app.digest {
						t.Errorf("tag entry %+v %v, want %s from m.test", te, ok, app.digest)
					}
				}
			})
		})
	}
}

// TestFallbackTagThenRefusal: a tag the member gave while a.test was down
// is asked of a.test on the next pull; once a.test is back and refuses the
// repository (401), that is its answer: the member's tag is not served as
// stale. While a.test is still down, it is.
func TestFallbackTagThenRefusal(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, []upstreamSpec{{name: "a.test", fallback: []string{"m.test"}}, {name: "m.test", trustedTags: true}})
		a, m := e.ups["a.test"], e.ups["m.test"]
		app := a.push(t, e.net, "team/app", "1", 1)
		m.push(t, e.net, "team/app", "1", 1)
		req := Request{Upstream: "a.test", Repo: "team/app"}
		a.setFail("manifests", http.StatusServiceUnavailable)
		if got, _, err := e.manifest(t, req, "1"); err != nil || got.Digest != app.digest {
			t.Fatalf("a.test down, through the member: %v", err)
		}
		if got, out, err := e.manifest(t, req, "1"); err != nil || got.Digest != app.digest || out.Cache != CacheStale {
			t.Fatalf("a.test still down: %v %q, want the member's tag, stale", err, out.Cache)
		}
		a.setFail("manifests", http.StatusUnauthorized)
		if _, out, err := e.manifest(t, req, "1"); code(err) != oci.ErrDenied {
			t.Fatalf("a.test refuses: %v %q, want DENIED (not the member's tag as stale)", err, out.Cache)
		}
	})
}
