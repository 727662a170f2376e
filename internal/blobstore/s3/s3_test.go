package s3

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
	"github.com/regcache/regcache/internal/blobstore/blobstoretest"
	"github.com/regcache/regcache/internal/testenv"
)

func newStore(t *testing.T, srv *testenv.S3, prefix string, opts ...Option) *Store {
	t.Helper()
	s, err := New(t.Context(), Config{Endpoint: srv.Endpoint, Bucket: srv.Bucket, Region: srv.Region, Prefix: prefix,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PathStyle: true}, t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs the suite the disk store runs, against a real S3
// engine (versitygw) on loopback, without and with the local tier.
func TestConformance(t *testing.T) {
	srv := testenv.NewS3(t)
	n := 0
	blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
		n++ // each subtest its own prefix: an empty store
		return newStore(t, srv, "c"+string(rune('a'+n))+"/")
	})
	blobstoretest.Run(t, func(t *testing.T) blobstore.Store {
		n++
		return newStore(t, srv, "t"+string(rune('a'+n))+"/", WithLocalTier(1<<30))
	})
}

// incomplete counts multipart uploads left open under the prefix.
func incomplete(t *testing.T, srv *testenv.S3, prefix string) int {
	t.Helper()
	res, err := minio.Core{Client: srv.Client(t)}.ListMultipartUploads(t.Context(), srv.Bucket, prefix, "", "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	return len(res.Uploads)
}

// TestMultipartCommitsOnlyAfterVerify: a blob of several parts is
// uploaded while it is written, invisible until Commit, and a wrong one
// leaves no object and no open upload behind.
func TestMultipartCommitsOnlyAfterVerify(t *testing.T) {
	srv := testenv.NewS3(t)
	s := newStore(t, srv, "mp/", WithPartSize(5<<20))
	data := blobstoretest.RandBytes(7, 12<<20+123)
	d := digest.FromBytes(data)

	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 1 << 20 {
		if _, err := w.Write(data[off:min(off+1<<20, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if incomplete(t, srv, "mp/") != 1 {
		t.Fatal("no multipart upload runs while the blob is written")
	}
	if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("visible before commit: %v", err)
	}
	if err := w.Commit(t.Context(), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(b)
	b.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	// Ranged reads of the object.
	b, _ = s.Open(t.Context(), d)
	part := make([]byte, 100)
	if _, err := b.ReadAt(part, 6<<20); err != nil || !bytes.Equal(part, data[6<<20:6<<20+100]) {
		t.Fatalf("ReadAt of the object: %v", err)
	}
	b.Close()

	bad := append([]byte(nil), data...)
	bad[9<<20] ^= 1
	w, _ = s.Create(t.Context(), digest.FromString("other"))
	w.Write(bad)
	if err := w.Commit(t.Context(), -1); !errors.Is(err, blobstore.ErrDigestMismatch) {
		t.Fatalf("Commit = %v, want ErrDigestMismatch", err)
	}
	w.Close()
	if _, err := s.Stat(t.Context(), digest.FromString("other")); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal("wrong bytes visible")
	}
	if n := incomplete(t, srv, "mp/"); n != 0 {
		t.Fatalf("%d multipart uploads left open", n)
	}
}

// TestLocalTier: hits come from the tier (with S3 stopped, too), and the
// tier keeps to its bound, least recently used out first.
func TestLocalTier(t *testing.T) {
	srv := testenv.NewS3(t)
	s := newStore(t, srv, "tier/", WithLocalTier(250<<10))
	var ds []digest.Digest
	for i := range 3 {
		data := blobstoretest.RandBytes(uint64(20+i), 100<<10)
		d := digest.FromBytes(data)
		w, _ := s.Create(t.Context(), d)
		w.Write(data)
		if err := w.Commit(t.Context(), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		w.Close()
		ds = append(ds, d)
	}
	s.trimTier(t.Context()) // the commit's own trim runs in the background; this one waits
	if n := s.tierBytes.Load(); n > 250<<10 {
		t.Fatalf("tier holds %d bytes, bound 250 KiB", n)
	}
	if _, err := s.spool.Stat(t.Context(), ds[0]); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatal("the least recently used blob stayed in the tier")
	}
	srv.Stop()
	b, err := s.Open(t.Context(), ds[2])
	if err != nil {
		t.Fatalf("tier hit with S3 stopped: %v", err)
	}
	b.Close()
	if _, err := s.Open(t.Context(), ds[0]); !errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("a blob only in S3, with S3 stopped: %v, want ErrUnavailable", err)
	}
	srv.Start()
	time.Sleep(probeGap) // S3 found unreachable is asked again after a second
	if _, err := s.Open(t.Context(), ds[0]); err != nil {
		t.Fatalf("after S3 restarted: %v", err)
	}
}

// TestAbortStale: an upload left open (a replica killed mid-fill) is
// aborted once older than the bound, and a young one is kept.
func TestAbortStale(t *testing.T) {
	srv := testenv.NewS3(t)
	s := newStore(t, srv, "stale/", WithPartSize(5<<20))
	w, _ := s.Create(t.Context(), digest.FromString("killed"))
	w.Write(blobstoretest.RandBytes(9, 6<<20)) // one part queued: the upload exists; never committed or closed
	for deadline := time.Now().Add(10 * time.Second); incomplete(t, srv, "stale/") == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the multipart upload never started")
		}
	}
	if n, err := s.AbortStale(t.Context(), time.Hour); err != nil || n != 0 {
		t.Fatalf("AbortStale(1h) = %d, %v; want 0 (the upload is young)", n, err)
	}
	if n, err := s.AbortStale(t.Context(), 0); err != nil || n != 1 {
		t.Fatalf("AbortStale(0) = %d, %v; want 1", n, err)
	}
	if n := incomplete(t, srv, "stale/"); n != 0 {
		t.Fatalf("%d uploads left", n)
	}
}

// TestSecondWriterDefers: a second writer of a digest whose upload runs
// already (another replica streaming it) uploads nothing while it writes;
// at Commit it keeps the first one's object, or uploads its own when the
// first failed.
func TestSecondWriterDefers(t *testing.T) {
	srv := testenv.NewS3(t)
	data := blobstoretest.RandBytes(11, 11<<20)
	d := digest.FromBytes(data)
	for _, firstCommits := range []bool{true, false} {
		prefix := fmt.Sprintf("defer-%v/", firstCommits)
		s1 := newStore(t, srv, prefix, WithPartSize(5<<20))
		s2 := newStore(t, srv, prefix, WithPartSize(5<<20))
		w1, _ := s1.Create(t.Context(), d)
		w1.Write(data[:6<<20])
		for deadline := time.Now().Add(10 * time.Second); incomplete(t, srv, prefix) == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the first upload never started")
			}
		}
		w2, _ := s2.Create(t.Context(), d)
		w2.Write(data)
		time.Sleep(200 * time.Millisecond) // let w2's uploader decide
		if n := incomplete(t, srv, prefix); n != 1 {
			t.Fatalf("%d uploads run, want 1 (the second writer deferred)", n)
		}
		if firstCommits {
			w1.Write(data[6<<20:])
			if err := w1.Commit(t.Context(), int64(len(data))); err != nil {
				t.Fatal(err)
			}
		} else {
			w1.Close() // the first replica's fill failed
		}
		if err := w2.Commit(t.Context(), int64(len(data))); err != nil {
			t.Fatalf("second Commit (first committed: %v): %v", firstCommits, err)
		}
		w1.Close()
		w2.Close()
		b, err := s2.Open(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(b)
		b.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("object holds %d bytes, not the blob (first committed: %v)", len(got), firstCommits)
		}
		if n := incomplete(t, srv, prefix); n != 0 {
			t.Fatalf("%d uploads left open", n)
		}
	}
}

// TestTierFilledFromS3: a blob another replica committed is copied into
// this replica's tier on its first hit here, and served from the tier
// after that (with S3 stopped, too).
func TestTierFilledFromS3(t *testing.T) {
	srv := testenv.NewS3(t)
	other := newStore(t, srv, "shared/")
	mine := newStore(t, srv, "shared/", WithLocalTier(1<<30))
	data := blobstoretest.RandBytes(13, 3<<20)
	d := digest.FromBytes(data)
	w, _ := other.Create(t.Context(), d)
	w.Write(data)
	if err := w.Commit(t.Context(), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b, err := mine.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	mine.WaitCopies()
	if _, err := mine.spool.Stat(t.Context(), d); err != nil {
		t.Fatalf("not in the tier after a hit: %v", err)
	}
	srv.Stop()
	b, err = mine.Open(t.Context(), d)
	if err != nil {
		t.Fatalf("tier hit with S3 stopped: %v", err)
	}
	got, _ := io.ReadAll(b)
	b.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("the tier's copy differs")
	}
}

// TestNotFound: a missing object is "not found"; a missing bucket or
// upload is an error to report, not an absent blob.
func TestNotFound(t *testing.T) {
	for _, tt := range []struct {
		err  minio.ErrorResponse
		want bool
	}{
		{minio.ErrorResponse{Code: "NoSuchKey", StatusCode: 404}, true},
		{minio.ErrorResponse{StatusCode: 404}, true}, // a HEAD's 404, no body
		{minio.ErrorResponse{Code: "NoSuchBucket", StatusCode: 404}, false},
		{minio.ErrorResponse{Code: "NoSuchUpload", StatusCode: 404}, false},
		{minio.ErrorResponse{Code: "AccessDenied", StatusCode: 403}, false},
	} {
		if got := notFound(tt.err); got != tt.want {
			t.Errorf("notFound(%s %d) = %v, want %v", tt.err.Code, tt.err.StatusCode, got, tt.want)
		}
	}
}

// TestTierCountHeals: a tier count that drifted high (two commits of one
// digest counted twice) does not make a trim empty the tier: the trim
// recounts the files first.
func TestTierCountHeals(t *testing.T) {
	srv := testenv.NewS3(t)
	s := newStore(t, srv, "heal/", WithLocalTier(1<<20))
	data := blobstoretest.RandBytes(40, 100<<10)
	d := digest.FromBytes(data)
	w, _ := s.Create(t.Context(), d)
	w.Write(data)
	if err := w.Commit(t.Context(), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s.trimTier(t.Context())
	s.tierBytes.Add(10 << 20) // drift far over the bound
	s.trimTier(t.Context())
	if _, err := s.spool.Stat(t.Context(), d); err != nil {
		t.Fatalf("a trim on a drifted count emptied the tier: %v", err)
	}
	if n := s.tierBytes.Load(); n != int64(len(data)) {
		t.Errorf("tier count %d after the trim, want the %d bytes it holds", n, len(data))
	}
}

// TestMultipartFromOffsets: a blob of several parts whose bytes land at
// their offsets out of order (a fill over several connections) is uploaded
// as the in-order prefix grows, and the object holds the blob.
func TestMultipartFromOffsets(t *testing.T) {
	srv := testenv.NewS3(t)
	s := newStore(t, srv, "mpo/", WithPartSize(5<<20))
	data := blobstoretest.RandBytes(11, 12<<20+321)
	d := digest.FromBytes(data)
	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wa := w.(blobstore.WriterAt)
	const chunk = 1 << 20
	for off := (len(data) - 1) / chunk * chunk; off >= chunk; off -= chunk { // all but the first, last first
		if _, err := wa.WriteAt(data[off:min(off+chunk, len(data))], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if incomplete(t, srv, "mpo/") != 0 {
		t.Fatal("an upload started before any byte was in order")
	}
	if _, err := wa.WriteAt(data[:chunk], 0); err != nil {
		t.Fatal(err)
	}
	if err := wa.Advance(int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, err := io.ReadAll(b); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d landed", len(got), err, len(data))
	}
	if n := incomplete(t, srv, "mpo/"); n != 0 {
		t.Fatalf("%d multipart uploads left open", n)
	}
}

// TestUnreachable: with the S3 engine stopped, a lookup answers
// blobstore.ErrUnavailable within lookupTimeout (not after the S3
// client's ten retries), and lookups right after it at once, while one a
// second (probeGap) asks again; a blob of the local tier is still served.
// Started again, the next lookup after probeGap finds S3.
func TestUnreachable(t *testing.T) {
	srv := testenv.NewS3(t)
	s := newStore(t, srv, "down/", WithLocalTier(1<<30))
	data := blobstoretest.RandBytes(3, 1<<20)
	d := digest.FromBytes(data)
	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(t.Context(), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	other := digest.FromString("not stored")
	srv.Stop()
	start := time.Now()
	_, err = s.Stat(t.Context(), other)
	if took := time.Since(start); !errors.Is(err, blobstore.ErrUnavailable) || took > lookupTimeout+time.Second {
		t.Fatalf("Stat with S3 stopped: %v after %s, want ErrUnavailable within %s", err, took, lookupTimeout)
	}
	start = time.Now()
	if _, err := s.Open(t.Context(), other); !errors.Is(err, blobstore.ErrUnavailable) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("Open right after: %v after %s, want ErrUnavailable at once", err, time.Since(start))
	}
	if b, err := s.Open(t.Context(), d); err != nil {
		t.Errorf("a blob of the local tier with S3 stopped: %v", err)
	} else {
		b.Close()
	}
	srv.Start()
	time.Sleep(probeGap)
	if _, err := s.Stat(t.Context(), other); !errors.Is(err, blobstore.ErrNotFound) {
		t.Errorf("Stat with S3 back: %v, want ErrNotFound", err)
	}
}
