package clientconfig

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteFileNew(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "etc/docker/daemon.json")
	if err := WriteFile(path, []byte("{}\n"), WriteOptions{BackupSuffix: ".bak"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("new file: %v %v", fi, err)
	}
	if _, err := os.Stat(path + ".bak"); !os.IsNotExist(err) {
		t.Fatalf("backup of a missing file: %v", err)
	}
}

func TestWriteFileKeepsModeOwnerAndBacksUp(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(path, []byte("old"), 0o444); err != nil { // read-only file
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		if err := os.Chown(path, 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFile(path, []byte("new"), WriteOptions{BackupSuffix: ".bak"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	bak, _ := os.ReadFile(path + ".bak")
	if string(got) != "new" || string(bak) != "old" {
		t.Fatalf("content %q backup %q", got, bak)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("mode %v, want 0444", fi.Mode().Perm())
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Getuid() == 0 && (st.Uid != 1234 || st.Gid != 5678) {
		t.Errorf("owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".regcache-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestWriteFileThroughSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "real", "daemon.json")
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(target, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "daemon.json")
	if err := os.Symlink("real/daemon.json", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("new"), WriteOptions{BackupSuffix: ".bak"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced by a file: %v %v", fi, err)
	}
	got, _ := os.ReadFile(target)
	bak, _ := os.ReadFile(target + ".bak")
	if string(got) != "new" || string(bak) != "old" {
		t.Fatalf("target %q backup %q", got, bak)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	// A dangling link is followed too: the file is created where it points.
	dangling := filepath.Join(dir, "dangling.json")
	if err := os.Symlink("real/new.json", dangling); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(dangling, []byte("x"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "real/new.json")); string(got) != "x" {
		t.Fatalf("dangling link target: %q", got)
	}
}

func TestDiffMatchesPatch(t *testing.T) {
	t.Parallel()
	patch, err := exec.LookPath("patch")
	if err != nil {
		t.Skip("patch not installed")
	}
	m := mustMirror(t, "http://192.0.2.1:5000")
	cases := [][]byte{
		nil,
		[]byte("{\n  \"a\": 1,\n  \"b\": [\n    1,\n    2\n  ],\n  \"c\": 3,\n  \"d\": 4,\n  \"e\": 5,\n  \"f\": 6,\n  \"g\": 7,\n  \"registry-mirrors\": []\n}\n"),
		[]byte(`{"a":1}`),
	}
	for i, old := range cases {
		new, _, err := DockerEnable(old, DockerOptions{Mirror: m})
		if err != nil {
			t.Fatal(err)
		}
		d := Diff(old, new, DiffOptions{OldName: "a/daemon.json", NewName: "b/daemon.json"})
		dir := t.TempDir()
		file := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(file, old, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(patch, "-s", file)
		cmd.Stdin = strings.NewReader(d)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("case %d: patch: %v\n%s\n%s", i, err, out, d)
		}
		if got, _ := os.ReadFile(file); string(got) != string(new) {
			t.Fatalf("case %d: patched file differs:\n%q\n%q\n%s", i, got, new, d)
		}
	}
	if Diff([]byte("x"), []byte("x"), DiffOptions{}) != "" {
		t.Fatal("diff of equal inputs is not empty")
	}
}

// The kernel resolves a relative link against the directory it really is
// in, not the lexical one: /etc/docker -> /srv/docker and
// /srv/docker/daemon.json -> ../conf/daemon.json is /srv/conf/daemon.json.
func TestResolvePathRelativeLinkInSymlinkedDir(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, d := range []string{"srv/docker", "srv/conf", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	real := filepath.Join(root, "srv", "conf", "daemon.json")
	if err := os.WriteFile(real, []byte(`{"debug": true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "srv", "docker"), filepath.Join(root, "etc", "docker")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../conf/daemon.json", filepath.Join(root, "srv", "docker", "daemon.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../conf/new.json", filepath.Join(root, "srv", "docker", "new.json")); err != nil { // dangling
		t.Fatal(err)
	}
	p := filepath.Join(root, "etc", "docker", "daemon.json")
	if got, err := ResolvePath(p); err != nil || got != real {
		t.Errorf("ResolvePath = %q, %v; want %q", got, err, real)
	}
	if err := WriteFile(p, []byte("new"), WriteOptions{BackupSuffix: ".bak"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(real); string(got) != "new" {
		t.Errorf("real file: %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc", "conf")); err == nil {
		t.Error("a file was created at the lexically resolved path")
	}
	dangling := filepath.Join(root, "etc", "docker", "new.json")
	if err := WriteFile(dangling, []byte("x"), WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "srv", "conf", "new.json")); err != nil || string(got) != "x" {
		t.Errorf("dangling link target: %q, %v", got, err)
	}
}

// The backup takes the source's mode and owner every time, not those of an
// older backup file.
func TestWriteFileBackupFollowsSourceMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".bak", []byte("older"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		if err := os.Chown(path, 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFile(path, []byte("new"), WriteOptions{BackupSuffix: ".bak"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + ".bak")
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("backup: %v %v, want mode 0644", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); os.Getuid() == 0 && (st.Uid != 1234 || st.Gid != 5678) {
		t.Errorf("backup owner %d:%d, want 1234:5678", st.Uid, st.Gid)
	}
	if b, _ := os.ReadFile(path + ".bak"); string(b) != "old" {
		t.Errorf("backup %q", b)
	}
}
