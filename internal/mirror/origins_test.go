package mirror

import (
	"net/http"
	"testing"
	"testing/synctest"

	"github.com/regcache/regcache/internal/oci"
)

// TestOrigins: bytes one upstream served are served under another
// upstream's name only once that upstream served the same bytes itself
// (its GET by digest is verified, then it is recorded as an origin and not
// asked again); its HEAD alone vouches for nothing.
func TestOrigins(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		b        func(e *env, app image) // what b.test holds
		manifest bool
		want     oci.ErrorCode
		origin   bool // b.test recorded as an origin after
	}{
		{"b serves the same blob", func(e *env, app image) { e.ups["b.test"].push(e.t, e.net, "team/app", "1", 1) }, false, "", true},
		{"b serves the same manifest", func(e *env, app image) { e.ups["b.test"].push(e.t, e.net, "team/app", "1", 1) }, true, "", true},
		{"b says it holds the blob and serves other bytes", func(e *env, app image) {
			e.ups["b.test"].lie(app.blobs[1], []byte("other bytes"))
		}, false, oci.ErrBlobUnknown, false},
		{"b does not hold it", func(*env, image) {}, false, oci.ErrBlobUnknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, []upstreamSpec{{name: "a.test"}, {name: "b.test"}})
				a, b := e.ups["a.test"], e.ups["b.test"]
				app := a.push(t, e.net, "team/app", "1", 1)
				fromA := Request{Upstream: "a.test", Repo: "team/app"}
				if _, _, err := e.manifest(t, fromA, "1"); err != nil {
					t.Fatal(err)
				}
				if _, _, err := e.blob(t, fromA, app.blobs[1]); err != nil {
					t.Fatal(err)
				}
				e.settle()
				tt.b(e, app)
				b.reset()

				fromB := Request{Upstream: "b.test", Repo: "team/app"}
				d, kind := app.blobs[1], "blobs"
				ask := func() error {
					_, _, err := e.blob(t, fromB, d)
					return err
				}
				if tt.manifest {
					d, kind = app.digest, "manifests"
					ask = func() error {
						_, _, err := e.manifest(t, fromB, d.String())
						return err
					}
				}
				if err := ask(); code(err) != tt.want || (tt.want == "" && err != nil) {
					t.Fatalf("%s under b.test: %v, want %q", d, err, tt.want)
				}
				if origin, _ := e.index.HasOrigin(t.Context(), "b.test", d); origin != tt.origin {
					t.Errorf("b.test recorded as an origin of %s: %v, want %v", d, origin, tt.origin)
				}
				if held, _ := e.index.Holds(t.Context(), "b.test", "team/app", d); held != tt.origin {
					t.Errorf("b.test's team/app recorded as holding %s: %v, want %v", d, held, tt.origin)
				}
				if tt.want != "" {
					return
				}
				if n := b.count(http.MethodGet, kind, "team/app", d.String()); n != 1 {
					t.Errorf("b.test was asked %d GETs of %s, want 1 (its own bytes, verified)", n, d)
				}
				if err := ask(); err != nil {
					t.Fatal(err)
				}
				if n := b.count(http.MethodGet, kind, "team/app", d.String()); n != 1 {
					t.Errorf("asked again: b.test was asked %d GETs, want still 1 (recorded)", n)
				}
			})
		})
	}
}
