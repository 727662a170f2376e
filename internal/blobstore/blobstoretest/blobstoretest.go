// Package blobstoretest is the conformance suite every blobstore.Store
// implementation runs: Run(t, newStore).
package blobstoretest

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/regcache/regcache/internal/blobstore"
)

// Run checks the Store contract against stores made by newStore.
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Store) {
	t.Run("CommitThenRead", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(1, 300<<10)
		d := digest.FromBytes(data)
		w := create(t, s, d)
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Stat before commit = %v, want ErrNotFound", err)
		}
		write(t, w, data)
		if err := w.Commit(t.Context(), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 10)
		if _, err := w.ReadAt(buf, 100); err != nil || !bytes.Equal(buf, data[100:110]) {
			t.Fatalf("ReadAt after commit: %v", err)
		}
		w.Close()
		size, err := s.Stat(t.Context(), d)
		if err != nil || size != int64(len(data)) {
			t.Fatalf("Stat = %d, %v", size, err)
		}
		b, err := s.Open(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		got, _ := io.ReadAll(b)
		if !bytes.Equal(got, data) || b.Size() != int64(len(data)) {
			t.Fatal("read back different bytes")
		}
	})
	t.Run("ReadWhileGrowing", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(2, 4096)
		w := create(t, s, digest.FromBytes(data))
		defer w.Close()
		write(t, w, data[:1000])
		buf := make([]byte, 1000)
		if n, err := w.ReadAt(buf, 0); n != 1000 || !bytes.Equal(buf, data[:1000]) {
			t.Fatalf("ReadAt of written part: %d %v", n, err)
		}
		if w.Written() != 1000 {
			t.Fatalf("Written = %d", w.Written())
		}
	})
	t.Run("WriteAtThenAdvance", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(8, 3<<20+777)
		d := digest.FromBytes(data)
		w := create(t, s, d)
		defer w.Close()
		wa, ok := w.(blobstore.WriterAt)
		if !ok {
			t.Skip("this store's writer takes bytes in order only: fills of it run over one stream")
		}
		// The second half lands first, then the first; the prefix moves
		// over each as it becomes contiguous.
		half := len(data) / 2
		if _, err := wa.WriteAt(data[half:], int64(half)); err != nil {
			t.Fatal(err)
		}
		if w.Written() != 0 {
			t.Fatalf("Written = %d after a WriteAt ahead, want 0", w.Written())
		}
		buf := make([]byte, 100)
		if _, err := w.ReadAt(buf, int64(half)); err != nil || !bytes.Equal(buf, data[half:half+100]) {
			t.Fatalf("ReadAt of landed bytes: %v", err)
		}
		if _, err := wa.WriteAt(data[:half], 0); err != nil {
			t.Fatal(err)
		}
		if err := wa.Advance(int64(half)); err != nil || w.Written() != int64(half) {
			t.Fatalf("Advance: %v, Written %d", err, w.Written())
		}
		if _, err := wa.WriteAt(data[:10], 0); err == nil {
			t.Fatal("WriteAt inside the bytes written in order succeeded")
		}
		if err := wa.Advance(int64(len(data) - half)); err != nil {
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
		if got, _ := io.ReadAll(b); !bytes.Equal(got, data) {
			t.Fatal("read back different bytes")
		}
	})
	t.Run("WriteAtWrongBytes", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(9, 100<<10)
		d := digest.FromBytes(data)
		w := create(t, s, d)
		defer w.Close()
		wa, ok := w.(blobstore.WriterAt)
		if !ok {
			t.Skip("this store's writer takes bytes in order only")
		}
		bad := append([]byte(nil), data...)
		bad[len(bad)-5] ^= 1
		if _, err := wa.WriteAt(bad, 0); err != nil {
			t.Fatal(err)
		}
		if err := wa.Advance(int64(len(bad))); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(t.Context(), int64(len(data))); !errors.Is(err, blobstore.ErrDigestMismatch) {
			t.Fatalf("Commit = %v, want ErrDigestMismatch", err)
		}
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("corrupt content visible: %v", err)
		}
	})
	t.Run("DigestMismatch", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(3, 1000)
		d := digest.FromBytes(data)
		w := create(t, s, d)
		data[10] ^= 1
		write(t, w, data)
		if err := w.Commit(t.Context(), 1000); !errors.Is(err, blobstore.ErrDigestMismatch) {
			t.Fatalf("Commit = %v, want ErrDigestMismatch", err)
		}
		w.Close()
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("corrupt content visible: %v", err)
		}
	})
	t.Run("SizeMismatch", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(4, 1000)
		d := digest.FromBytes(data)
		w := create(t, s, d)
		write(t, w, data)
		if err := w.Commit(t.Context(), 999); !errors.Is(err, blobstore.ErrSizeMismatch) {
			t.Fatalf("Commit = %v, want ErrSizeMismatch", err)
		}
		w.Close()
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatal("content of the wrong size visible")
		}
	})
	t.Run("CancelAndClose", func(t *testing.T) {
		s := newStore(t)
		data := RandBytes(5, 100)
		d := digest.FromBytes(data)
		w := create(t, s, d)
		write(t, w, data)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatal("uncommitted content visible after Close")
		}
	})
	t.Run("DeleteAndWalk", func(t *testing.T) {
		s := newStore(t)
		want := map[digest.Digest]int64{}
		for i := range 3 {
			data := RandBytes(uint64(10+i), 100+i)
			d := digest.FromBytes(data)
			w := create(t, s, d)
			write(t, w, data)
			if err := w.Commit(t.Context(), -1); err != nil {
				t.Fatal(err)
			}
			w.Close()
			want[d] = int64(len(data))
		}
		got := map[digest.Digest]int64{}
		if err := s.Walk(t.Context(), func(d digest.Digest, n int64) error { got[d] = n; return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Walk found %v, want %v", got, want)
		}
		for d := range want {
			if err := s.Delete(t.Context(), d); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(t.Context(), d); err != nil {
				t.Fatalf("second Delete: %v", err)
			}
			if _, err := s.Open(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
				t.Fatalf("Open after Delete = %v", err)
			}
		}
	})
	t.Run("Absent", func(t *testing.T) {
		s := newStore(t)
		d := digest.FromString("absent")
		if _, err := s.Open(t.Context(), d); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Open = %v", err)
		}
	})
}

func create(t *testing.T, s blobstore.Store, d digest.Digest) blobstore.Writer {
	t.Helper()
	w, err := s.Create(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func write(t *testing.T, w io.Writer, p []byte) {
	t.Helper()
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
}

// RandBytes returns n pseudo-random bytes, the same for the same seed.
func RandBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
