package cache

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/redis/go-redis/v9"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/blobstoretest"
	"github.com/regcache/regcache/internal/blobstore/disk"
	"github.com/regcache/regcache/internal/blobstore/s3"
	"github.com/regcache/regcache/internal/cacheindex"
	"github.com/regcache/regcache/internal/cacheindex/redisindex"
	"github.com/regcache/regcache/internal/testenv"
)

// backend is a store and index to run the cache operations on, and a way
// to damage a stored file behind their back.
type backend struct {
	store  blobstore.Store
	index  cacheindex.Backend
	damage func(t *testing.T, d digest.Digest)
}

// flipByte flips one byte of the file at path.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOpsOnEveryBackend runs the cache operations (ls, prune by image with
// a layer two images share, rm, verify, stats, the scrub) on local disk
// with bbolt and on S3 with Redis (the suite's engines), with the same
// expectations.
func TestOpsOnEveryBackend(t *testing.T) { onEveryBackend(t, runOps) }

// TestEvictorOnEveryBackend: eviction over the cap takes the least
// recently used image and keeps the layer the other shares, on local disk
// with bbolt and on S3 with Redis alike (the Redis index has no running
// totals: the evictor counts it).
func TestEvictorOnEveryBackend(t *testing.T) { onEveryBackend(t, runEvict) }

// onEveryBackend runs fn on local disk with bbolt and on S3 with Redis.
func onEveryBackend(t *testing.T, fn func(*testing.T, backend)) {
	t.Run("disk+bbolt", func(t *testing.T) {
		root := t.TempDir()
		st, err := disk.New(root)
		if err != nil {
			t.Fatal(err)
		}
		ix, err := cacheindex.Open(filepath.Join(root, "index.db"), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		fn(t, backend{st, ix, func(t *testing.T, d digest.Digest) {
			flipByte(t, filepath.Join(root, "blobs", "sha256", d.Encoded()[:2], d.Encoded()))
		}})
	})
	t.Run("s3+redis", func(t *testing.T) {
		srv := testenv.NewS3(t)
		st, err := s3.New(t.Context(), s3.Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: srv.Region,
			AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		rs := testenv.NewRedis(t)
		opts, err := redisindex.ParseURL(rs.URL)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		ix, err := redisindex.New(t.Context(), c, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		fn(t, backend{st, ix, func(t *testing.T, d digest.Digest) {
			flipByte(t, filepath.Join(srv.Dir, srv.Bucket, "blobs", "sha256", d.Encoded()[:2], d.Encoded()))
		}})
	})
}

// image stores a manifest referencing layers in b and tags it.
func image(t *testing.T, b backend, repo string, layers ...digest.Digest) digest.Digest {
	t.Helper()
	type desc struct {
		MediaType string        `json:"mediaType"`
		Digest    digest.Digest `json:"digest"`
		Size      int64         `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
		Config: desc{"application/vnd.oci.image.config.v1+json", layers[0], 1}}
	for _, l := range layers[1:] {
		m.Layers = append(m.Layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", l, 1})
	}
	body, _ := json.Marshal(m)
	d := put(t, b.store, body)
	if err := b.index.PutManifest(t.Context(), "docker.io", repo, d, cacheindex.ManifestEntry{MediaType: m.MediaType, Size: int64(len(body)), Refs: layers}); err != nil {
		t.Fatal(err)
	}
	if err := b.index.PutTag(t.Context(), "docker.io", repo, "v1", cacheindex.TagEntry{Digest: d, MediaType: m.MediaType, Fetched: time.Now(), Checked: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b.index.Touch(d)
	return d
}

// twoImages are the suites' fixture: images a and b of 100 KiB blobs (a
// config and a layer each of their own, and a layer they share), b used
// after a.
type twoImages struct {
	ma, mb, cfgA, cfgB, shared, onlyA, onlyB digest.Digest
}

func seedTwoImages(t *testing.T, b backend) twoImages {
	t.Helper()
	blob := func(seed uint64) digest.Digest {
		d := put(t, b.store, blobstoretest.RandBytes(seed, 100<<10))
		if err := b.index.PutBlob(t.Context(), d, 100<<10); err != nil {
			t.Fatal(err)
		}
		return d
	}
	var f twoImages
	f.cfgA, f.cfgB, f.shared, f.onlyA, f.onlyB = blob(1), blob(2), blob(3), blob(4), blob(5)
	f.ma = image(t, b, "library/a", f.cfgA, f.shared, f.onlyA)
	time.Sleep(5 * time.Millisecond) // b is used after a
	f.mb = image(t, b, "library/b", f.cfgB, f.shared, f.onlyB)
	b.index.TouchAll([]digest.Digest{f.cfgB, f.shared, f.onlyB})
	return f
}

func runOps(t *testing.T, b backend) {
	ctx := t.Context()
	f := seedTwoImages(t, b)
	ma, mb, cfgA, cfgB, shared, onlyA, onlyB := f.ma, f.mb, f.cfgA, f.cfgB, f.shared, f.onlyA, f.onlyB
	ops := NewOps(b.store, b.index, OpsConfig{})

	l, err := ops.List(ctx, ListOptions{Sort: "last-use"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Images) != 2 || l.Images[0].Digest != ma || l.Images[0].Blobs != 3 || !l.Images[0].Stored {
		t.Fatalf("ls: %+v", l.Images)
	}
	// Prune to a size that one image's own content brings it under: the
	// least recently used image goes, the layer b shares stays.
	res, err := ops.Prune(ctx, PruneRequest{ToSize: 400 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || res.Images[0].Digest != ma || res.Files != 3 {
		t.Fatalf("prune: %+v", res)
	}
	for _, d := range []digest.Digest{ma, cfgA, onlyA} {
		if _, err := b.store.Stat(ctx, d); err == nil {
			t.Errorf("prune kept %s of image a", d)
		}
	}
	for _, d := range []digest.Digest{mb, cfgB, shared, onlyB} {
		if _, err := b.store.Stat(ctx, d); err != nil {
			t.Errorf("prune took %s of image b: %v", d, err)
		}
	}

	// Verify: a flipped byte is found, set aside and forgotten.
	b.damage(t, onlyB)
	var damaged []digest.Digest
	rep, err := ops.Verify(ctx, func(ev VerifyEvent) {
		if ev.Damaged != "" {
			damaged = append(damaged, ev.Damaged)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Corrupt, []digest.Digest{onlyB}) || !slices.Equal(damaged, []digest.Digest{onlyB}) {
		t.Errorf("verify: corrupt %v, events %v", rep.Corrupt, damaged)
	}
	if _, ok, _ := b.index.Blob(ctx, onlyB); ok {
		t.Error("verify kept the damaged blob's entry")
	}
	st, err := ops.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Quarantined != 1 || st.Quarantine == "" {
		t.Errorf("stats: %+v", st)
	}

	// The scrub finds damage on this store too.
	b.damage(t, shared)
	var forgot []digest.Digest
	s := NewScrub(b.store, Pace{time.Millisecond, 1 << 30}, func(_ context.Context, d digest.Digest) { forgot = append(forgot, d) }) // a pass at 1 GiB/s
	if _, err := s.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(forgot, []digest.Digest{shared}) {
		t.Errorf("scrub forgot %v, want the shared layer", forgot)
	}

	// rm of the tag: the image goes, and the index says so.
	rm, err := ops.Remove(ctx, RemoveRequest{Targets: []RemoveTarget{{Raw: "b:v1", Registry: "docker.io", Repo: "b", Tag: "v1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Removed) != 1 || rm.Removed[0].Digest != mb || rm.Removed[0].Files == 0 {
		t.Errorf("rm: %+v", rm)
	}
	if _, err := b.store.Stat(ctx, mb); err == nil {
		t.Error("rm kept the manifest")
	}
	// The pruned image's tag stays (its next pull fetches it again); the
	// removed one is gone.
	if l, _ := ops.List(ctx, ListOptions{}); len(l.Images) != 1 || l.Images[0].Digest != ma || l.Images[0].Stored {
		t.Errorf("ls after rm: %+v", l.Images)
	}
}

func runEvict(t *testing.T, b backend) {
	ctx := t.Context()
	f := seedTwoImages(t, b)
	ma, mb, cfgA, cfgB, shared, onlyA, onlyB := f.ma, f.mb, f.cfgA, f.cfgB, f.shared, f.onlyA, f.onlyB
	if err := b.index.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var forgot []digest.Digest
	e := NewEvictor(b.store, b.index, EvictorConfig{MaxSize: 1 << 30}, OpsConfig{Forget: func(ds ...digest.Digest) { forgot = append(forgot, ds...) }})
	if n, _, err := e.Evict(ctx); n != 0 || err != nil {
		t.Fatalf("under the cap: evicted %d (%v)", n, err)
	}
	// 500 KiB and two manifests stored; a cap of 440 KiB (low water 396)
	// is met by taking a's own content.
	e.SetMaxSize(440 << 10)
	n, _, err := e.Evict(ctx)
	if err != nil || n != 3 {
		t.Fatalf("over the cap: evicted %d files (%v), want a's manifest, config and own layer", n, err)
	}
	for d, want := range map[digest.Digest]bool{ma: false, cfgA: false, onlyA: false, shared: true, mb: true, cfgB: true, onlyB: true} {
		_, err := b.store.Stat(ctx, d)
		if got := err == nil; got != want {
			t.Errorf("%s stored: %v, want %v (%v)", d, got, want, err)
		}
	}
	if len(forgot) != 3 {
		t.Errorf("forgot %v in memory, want a's three", forgot)
	}
}
