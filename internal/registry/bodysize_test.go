package registry

import (
	"testing"

	"github.com/regcache/regcache/internal/testenv"
)

// TestEndlessBodyCutAtKnownSize: a blob whose size the manifest gives is
// cut at that size when the upstream sends it without a Content-Length and
// without end: the client sees a failed transfer, nothing is cached, and
// the mirror stops reading long before the upstream would stop sending.
func TestEndlessBodyCutAtKnownSize(t *testing.T) {
	e := newEnv(t, envOptions{})
	img := e.imgs.Single
	if r := e.do(t, "GET", "/v2/"+img.Repo+"/manifests/"+img.Tag); r.status != 200 {
		t.Fatalf("manifest: %d", r.status)
	}
	layer := img.Layers[0]
	e.hub.SetRedirect(false)
	e.hub.SetFault(string(layer.Digest), testenv.Endless())
	r := e.do(t, "GET", "/v2/"+img.Repo+"/blobs/"+string(layer.Digest))
	if r.err == nil && r.status == 200 {
		t.Fatalf("an endless body was served as a complete %d-byte blob", len(r.body))
	}
	if int64(len(r.body)) > layer.Size {
		t.Errorf("the client got %d bytes of a %d-byte blob", len(r.body), layer.Size)
	}
	if e.storeHolds(t, layer.Digest) {
		t.Fatal("the endless blob was cached")
	}
	if sent := e.hub.BlobBytes(string(layer.Digest)); sent > layer.Size+64<<20 {
		t.Errorf("the upstream sent %d bytes before the mirror stopped (blob %d bytes)", sent, layer.Size)
	}
}
