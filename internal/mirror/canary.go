package mirror

import (
	"context"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/canary"
	"github.com/regcache/regcache/internal/oci"
)

// isCanary reports whether req is for the canary image (package canary):
// its reserved repository on the default upstream. The canary is answered
// here, made up, before any route to an upstream, index or store: it is
// never fetched, cached, indexed or evicted.
func (s *Service) isCanary(req Request) bool {
	return len(s.upstreams) > 0 && strings.EqualFold(req.Upstream, s.upstreams[0].Name) && req.Repo == canary.Repo
}

func canaryManifest(ref oci.Reference) (*Manifest, Outcome, error) {
	c, ok := canary.Manifest(ref.Tag, ref.Digest)
	if !ok {
		return nil, Outcome{}, oci.Errorf(oci.ErrManifestUnknown, "%s is regcache's canary: only tags v-<16 lowercase hex digits> exist there, and only on this mirror", canary.Repo)
	}
	return &Manifest{Body: c.Body, MediaType: c.MediaType, Digest: c.Digest}, Outcome{}, nil
}

func canaryBlob(req Request, d digest.Digest) (*Blob, Outcome, error) {
	c, ok := canary.Blob(d)
	if !ok {
		return nil, Outcome{}, oci.Errorf(oci.ErrBlobUnknown, "%s is not a blob of regcache's canary", d)
	}
	if req.Head {
		return NewBlob(d, headOnly(len(c.Body))), Outcome{}, nil
	}
	return NewBlob(d, bytesBody(c.Body)), Outcome{}, nil
}

func canaryListing() (*Listing, Outcome, error) {
	return nil, Outcome{}, oci.Errorf(oci.ErrNameUnknown, "%s is regcache's canary: it lists nothing", canary.Repo)
}

// bytesBody is a blob held in memory (the canary's, a few hundred bytes).
type bytesBody []byte

var _ blobBody = bytesBody(nil)

func (b bytesBody) Size(context.Context) (int64, error) { return int64(len(b)), nil }
func (bytesBody) Rereadable() bool                      { return true }
func (bytesBody) Close() error                          { return nil }

func (b bytesBody) Send(_ context.Context, w io.Writer, start, length int64) error {
	if length < 0 {
		length = int64(len(b)) - start
	}
	if start < 0 || start+length > int64(len(b)) {
		return io.ErrUnexpectedEOF
	}
	_, err := w.Write(b[start : start+length])
	return err
}
