package mirror

import (
	"bytes"
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/auth"
	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/fill"
	"github.com/regcache/regcache/internal/testenv"
	"github.com/regcache/regcache/internal/upstream"
)

// TestBlobOneStoreLookup: a cold blob GET asks the store once (the fill's
// open answers "not there" and starts the fill), and a warm one asks once
// too (the same open answers the committed blob).
func TestBlobOneStoreLookup(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	dir := t.TempDir()
	ds, err := disk.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: ds}
	index, err := cacheindex.Open(filepath.Join(dir, "index.db"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer index.Close()
	up, err := upstream.New("docker.io", hub.URL, auth.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	fills := fill.New(store)
	defer fills.Close()
	s := New(store, index, fills, []*Upstream{{Name: "docker.io", Client: up}}, WithPrefetch(false, 1))
	defer s.Close()
	img := imgs.Single
	layer := img.Layers[0]
	get := func() (*Blob, Outcome) {
		t.Helper()
		store.lookups.Store(0)
		b, out, err := s.Blob(t.Context(), Request{Upstream: "docker.io", Repo: img.Repo}, layer.Digest)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := b.Send(t.Context(), &got, 0, -1); err != nil || digest.FromBytes(got.Bytes()) != layer.Digest {
			t.Fatalf("Send: %v, %d bytes", err, got.Len())
		}
		b.Close()
		return b, out
	}
	if _, out := get(); out.Cache != "miss" || store.lookups.Load() != 1 {
		t.Errorf("cold GET: %q with %d store lookups, want a miss with 1", out.Cache, store.lookups.Load())
	}
	for deadline := time.Now().Add(10 * time.Second); fills.Active() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("fill still running")
		}
	}
	if _, out := get(); out.Cache != "hit" || store.lookups.Load() != 1 {
		t.Errorf("warm GET: %q with %d store lookups, want a hit with 1", out.Cache, store.lookups.Load())
	}
}

// countingStore counts the store's lookups (Stat and Open).
type countingStore struct {
	*disk.Store
	lookups atomic.Int64
}

func (s *countingStore) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	s.lookups.Add(1)
	return s.Store.Stat(ctx, d)
}

func (s *countingStore) Open(ctx context.Context, d digest.Digest) (blobstore.Blob, error) {
	s.lookups.Add(1)
	return s.Store.Open(ctx, d)
}
