package app

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/regcache/regcache/internal/testenv"
)

// TestDamagedIndexRebuilt: an index.db with random pages, truncated or
// zero-filled does not stop the mirror: it starts, moves the file aside,
// rebuilds the index from the store (logging it), and pulls work, the
// blobs from the store.
func TestDamagedIndexRebuilt(t *testing.T) {
	hub := testenv.NewHub(t)
	imgs := hub.Seed(t)
	img := imgs.Single
	env := func(data string) map[string]string {
		return map[string]string{"REGCACHE_UPSTREAM_URL": hub.URL, "REGCACHE_UPSTREAM_NAME": "docker.io", "REGCACHE_DATA": data, "REGCACHE_PREFETCH": "false"}
	}
	for name, damage := range map[string]func(t *testing.T, path string){
		"random pages": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			page := make([]byte, 4096)
			// Every page but the second meta page (so bbolt takes the file
			// for a database): which pages hold live data depends on the
			// writes' history, so every other page may miss them all.
			for off := int64(0); off < fi.Size(); off += 4096 {
				if off == 4096 {
					continue
				}
				rand.Read(page)
				f.WriteAt(page, off)
			}
		},
		"truncated": func(t *testing.T, path string) {
			if err := os.Truncate(path, 100); err != nil {
				t.Fatal(err)
			}
		},
		"cut in half": func(t *testing.T, path string) { // meta pages intact: bbolt would fault past the end
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, fi.Size()/2+4096); err != nil {
				t.Fatal(err)
			}
		},
		"a value that does not decode": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket([]byte("blobs")).ForEach(func(k, _ []byte) error {
					return tx.Bucket([]byte("blobs")).Put(k, []byte("{not json"))
				})
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		"zero-filled": func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, make([]byte, fi.Size()), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			data := t.TempDir()
			t.Run("warm", func(t *testing.T) {
				m := startMirror(t, env(data))
				pullCrane(t, m.Host+"/"+img.Repo+":"+img.Tag)
			})
			damage(t, filepath.Join(data, "index.db"))
			t.Run("after the damage", func(t *testing.T) {
				m := startMirrorLogged(t, env(data))
				hub.ResetCounters()
				if got := pullCrane(t, m.Host+"/"+img.Repo+":"+img.Tag); got != string(img.Digest) {
					t.Fatalf("pull after the index was damaged: %s", got)
				}
				if n := hub.Count("GET", testenv.KindBlob) + hub.Count("GET", testenv.KindCDN); n != 0 {
					t.Errorf("%d blobs fetched again: the store's were not adopted", n)
				}
				if !strings.Contains(m.log(), "rebuilt from the store") {
					t.Errorf("the log does not say the index was rebuilt:\n%s", m.log())
				}
				moved, _ := filepath.Glob(filepath.Join(data, "index.db.damaged-*"))
				if len(moved) != 1 {
					t.Errorf("damaged index kept aside: %v", moved)
				}
			})
		})
	}
}
