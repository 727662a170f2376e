package cli

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"strings"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// partialBundle is what an interrupted `cache export` left in its
// FILE.partial: the bundle's entries before the cut (index.json comes
// last, so it is never among them).
type partialBundle struct {
	end    int64           // where the last whole entry ends (its padding included)
	layout bool            // oci-layout is there (the first entry)
	files  []digest.Digest // blobs/<algorithm>/<hex> entries that hash to their names
	bytes  int64           // their bytes
}

// scanPartial reads an interrupted export's file and keeps the entries it
// can vouch for: each is whole (header, body and padding on disk) and a
// blob hashes to its name, so a torn write at the end (a crash, a full
// disk) is cut off there. It stops at the first entry that is not whole,
// not right or not expected; without oci-layout first, nothing is kept.
func scanPartial(path string) (partialBundle, error) {
	var p partialBundle
	f, err := os.Open(path)
	if err != nil {
		return p, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return p, err
	}
	var read atomic.Int64
	cr := &countingReader{r: f, n: &read}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err != nil {
			return p, nil // the end marker, or a cut header: keep what came before
		}
		name := strings.TrimPrefix(h.Name, "./")
		var d digest.Digest
		switch {
		case name == v1.ImageLayoutFile && !p.layout && p.end == 0:
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return p, nil
			}
		case p.layout && strings.HasPrefix(name, "blobs/") && h.Typeflag == tar.TypeReg:
			if d, err = digestOfBlobPath(name); err != nil {
				return p, nil
			}
			v := d.Verifier()
			if n, err := io.Copy(v, tr); err != nil || n != h.Size || !v.Verified() {
				return p, nil // cut or torn: written again
			}
		default:
			return p, nil // index.json (a finished bundle's), or something else
		}
		end := read.Load() + (512-h.Size%512)%512
		if end > fi.Size() {
			return p, nil // the padding is not all there
		}
		p.end = end
		if d == "" {
			p.layout = true
			continue
		}
		p.files, p.bytes = append(p.files, d), p.bytes+h.Size
	}
}

// digestOfBlobPath is the digest a blobs/<algorithm>/<hex> entry names.
func digestOfBlobPath(name string) (digest.Digest, error) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 {
		return "", errors.New("not blobs/<algorithm>/<hex>")
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	return d, d.Validate()
}
