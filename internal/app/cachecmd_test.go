package app

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/cacheindex"
)

// TestForgetTagsMatchesIndexLayout: ForgetTags writes cacheindex's tag
// bucket directly, so it must agree with how cacheindex keys tags.
func TestForgetTagsMatchesIndexLayout(t *testing.T) {
	dir := t.TempDir()
	ix, err := cacheindex.Open(filepath.Join(dir, "index.db"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e := cacheindex.TagEntry{Digest: digest.FromString("m"), Fetched: time.Now(), Checked: time.Now()}
	keep := TagRef{"docker.io", "library/alpine", "3.21"}
	gone := TagRef{"docker.io", "library/alpine", "3.20"}
	for _, r := range []TagRef{keep, gone} {
		if err := ix.PutTag(r.Upstream, r.Repository, r.Tag, e); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ForgetTags(dir, []TagRef{gone}); err != nil {
		t.Fatal(err)
	}
	c, err := OpenCache(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok, _ := c.Index().Tag(gone.Upstream, gone.Repository, gone.Tag); ok {
		t.Error("the forgotten tag is still in the index")
	}
	if _, ok, _ := c.Index().Tag(keep.Upstream, keep.Repository, keep.Tag); !ok {
		t.Error("the other tag went too")
	}
	// While the Cache holds the index, a second opener fails at once.
	start := time.Now()
	if _, err := OpenCache(dir, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("second OpenCache: %v, want ErrLocked", err)
	}
	if err := ForgetTags(dir, nil); !errors.Is(err, ErrLocked) {
		t.Errorf("ForgetTags on an open cache: %v, want ErrLocked", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("noticing the lock took %s", el)
	}
}
