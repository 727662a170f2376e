package clientconfig

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// WriteOptions configures WriteFile.
type WriteOptions struct {
	// Mode is used when the file does not exist yet (default 0644). An
	// existing file keeps its mode and owner.
	Mode fs.FileMode
	// BackupSuffix, when set and the file exists, makes WriteFile keep the
	// previous content in <target><BackupSuffix> before replacing it. The
	// backup gets the file's mode and owner each time.
	BackupSuffix string
	// OrigSuffix, when set, makes WriteFile keep the content the file had
	// before regcache first changed it in <target><OrigSuffix>. That copy is
	// written once and never replaced; it is empty when there was no file.
	OrigSuffix string
	// Side marks one of regcache's own files beside a configuration (its
	// state): a symlink there may not lead out of the directory.
	Side bool
}

// SideDirSuffix names the one directory beside a configuration file that
// holds regcache's own files about it: <file>.regcache/ (its record of what
// enable added, the backup of the previous content and the content from
// before regcache first changed it). Nothing else of regcache's stays beside
// the file.
const SideDirSuffix = ".regcache"

// SideDir is the directory of regcache's files about target.
func SideDir(target string) string { return target + SideDirSuffix }

// ensureParent creates the directory path is in when that is a side
// directory (<file>.regcache), refusing one that is a symlink or not a
// directory: regcache's files about a configuration stay beside it.
func ensureParent(path string) error {
	dir := filepath.Dir(path)
	if !strings.HasSuffix(dir, SideDirSuffix) {
		return nil
	}
	fi, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", dir, err)
		}
		return ensureParent(path) // made by a parallel run, or by us: check it
	case err != nil:
		return fmt.Errorf("stat %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("refusing %s: regcache keeps its files about %s in this directory, but it is a %s; remove it", dir, strings.TrimSuffix(dir, SideDirSuffix), fileKind(fi))
	}
	return nil
}

func fileKind(fi fs.FileInfo) string {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return "symlink"
	}
	if fi.Mode().IsRegular() {
		return "file"
	}
	return fi.Mode().Type().String()
}

// RemoveSideDir removes target's side directory and what is in it (after
// disable removed a file regcache had created: its copies tell nothing
// more). A symlink there is removed, not followed.
func RemoveSideDir(target string) error {
	dir := SideDir(target)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// legacySideSuffixes are where regcache kept its files beside a
// configuration before they moved into the side directory, with the names
// they have there.
var legacySideSuffixes = [][2]string{
	{".regcache-state", "state"},
	{".regcache-backup", "backup"},
	{".regcache-orig", "orig"},
}

// MoveLegacySideFiles moves regcache's files of an earlier layout
// (<target>.regcache-state, -backup, -orig) into the side directory, where
// none of that name is yet; call it with the lock held.
func MoveLegacySideFiles(target string) error {
	for _, l := range legacySideSuffixes {
		old, dst := target+l[0], filepath.Join(SideDir(target), l[1])
		fi, err := os.Lstat(old)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", old, err)
		}
		if !fi.Mode().IsRegular() {
			continue // not one regcache wrote; CheckSideFile refuses it where it matters
		}
		if _, err := os.Lstat(dst); err == nil {
			continue
		}
		if err := ensureParent(dst); err != nil {
			return err
		}
		if err := os.Rename(old, dst); err != nil {
			return fmt.Errorf("move %s into %s: %w", old, SideDir(target), err)
		}
	}
	return nil
}

// MaxFileSize bounds the configuration and state files regcache reads.
const MaxFileSize = 1 << 20

// CheckSideFile refuses a side file of regcache's (state, lock, backup,
// original copy) that is a symlink leading out of its directory (a
// dangling one would have regcache create the link's target, as root), or
// that is not a regular file (a FIFO would hang the command).
func CheckSideFile(path string) error {
	if dir := filepath.Dir(path); strings.HasSuffix(dir, SideDirSuffix) {
		if fi, err := os.Lstat(dir); err == nil && !fi.IsDir() {
			return fmt.Errorf("refusing %s: regcache keeps its files about %s in this directory, but it is a %s; remove it", dir, strings.TrimSuffix(dir, SideDirSuffix), fileKind(fi))
		}
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := ResolvePath(path)
		if err != nil {
			return err
		}
		dir, err := filepath.EvalSymlinks(filepath.Dir(path))
		if err != nil {
			return fmt.Errorf("resolve %s: %w", filepath.Dir(path), err)
		}
		tdir, err := filepath.EvalSymlinks(filepath.Dir(target))
		if err != nil || tdir != dir {
			return fmt.Errorf("refusing %s: it is a symlink to %s, outside %s; regcache's own files beside a configuration must stay in its directory (remove the link)", path, target, dir)
		}
		if fi, err = os.Stat(target); errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return fmt.Errorf("stat %s: %w", target, err)
		}
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("refusing %s: it is not a regular file (%s); remove it", path, fi.Mode().Type())
	}
	return nil
}

// ResolvePath follows symlinks in path to the file they point at. A dangling
// final link resolves to its (missing) target, so a new file is created where
// the link points rather than replacing the link.
func ResolvePath(path string) (string, error) {
	for range 40 {
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return path, nil
		}
		if err != nil {
			return "", fmt.Errorf("stat %s: %w", path, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return path, nil
		}
		dest, err := os.Readlink(path)
		if err != nil {
			return "", fmt.Errorf("read link %s: %w", path, err)
		}
		if !filepath.IsAbs(dest) {
			// The kernel resolves a relative link in the directory the link
			// really is in, which differs from the lexical one when a
			// directory on the way is itself a symlink.
			dir, err := filepath.EvalSymlinks(filepath.Dir(path))
			if err != nil {
				return "", fmt.Errorf("resolve %s: %w", filepath.Dir(path), err)
			}
			dest = filepath.Join(dir, dest)
		}
		path = dest
	}
	return "", fmt.Errorf("resolve %s: too many levels of symbolic links", path)
}

// ReadFile reads path through symlinks; a missing file is (nil, false, nil).
// Only a regular file of at most MaxFileSize bytes is read: the open does
// not block (a FIFO there would hang the command), and nothing larger is
// held in memory.
func ReadFile(path string) (data []byte, exists bool, err error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, false, fmt.Errorf("refusing %s: it is not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > MaxFileSize {
		return nil, false, fmt.Errorf("refusing %s: it is %d bytes, more than the %d a configuration file may have; is it the right file?", path, fi.Size(), MaxFileSize)
	}
	data, err = io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, false, fmt.Errorf("refusing %s: it grew past %d bytes while read", path, MaxFileSize)
	}
	return data, true, nil
}

// WriteFile replaces the file at path (following symlinks to the target)
// with data atomically: the bytes go to a temporary file in the target's
// directory, which gets the old file's mode and owner, is fsynced and then
// renamed over the target; the directory is fsynced last. Readers see the
// old or the new file, never a partial one. Missing parent directories are
// created (0755).
func WriteFile(path string, data []byte, opts WriteOptions) error {
	if opts.Side {
		if err := ensureParent(path); err != nil {
			return err
		}
		if err := CheckSideFile(path); err != nil {
			return err
		}
	}
	target, err := ResolvePath(path)
	if err != nil {
		return err
	}
	mode := opts.Mode
	if mode == 0 {
		mode = 0o644
	}
	uid, gid := -1, -1
	old, statErr := os.Stat(target)
	switch {
	case statErr == nil:
		mode = old.Mode().Perm()
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	case errors.Is(statErr, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("create directory for %s: %w", target, err)
		}
	default:
		return fmt.Errorf("stat %s: %w", target, statErr)
	}
	if err := keepCopies(target, opts); err != nil {
		return err
	}
	return replace(target, data, mode, uid, gid)
}

// keepCopies writes the backup and, the first time, the original copy of
// target's current content, with target's mode and owner.
func keepCopies(target string, opts WriteOptions) error {
	if opts.BackupSuffix == "" && opts.OrigSuffix == "" {
		return nil
	}
	prev, exists, err := ReadFile(target)
	if err != nil {
		return err
	}
	mode, uid, gid := fs.FileMode(0o644), -1, -1
	if exists {
		fi, err := os.Stat(target)
		if err != nil {
			return fmt.Errorf("stat %s: %w", target, err)
		}
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	for _, suffix := range []string{opts.OrigSuffix, opts.BackupSuffix} {
		if suffix != "" {
			if err := ensureParent(target + suffix); err != nil {
				return err
			}
			if err := CheckSideFile(target + suffix); err != nil {
				return err
			}
		}
	}
	if opts.OrigSuffix != "" {
		orig := target + opts.OrigSuffix
		if _, err := os.Lstat(orig); errors.Is(err, fs.ErrNotExist) {
			if err := replace(orig, prev, mode, uid, gid); err != nil {
				return fmt.Errorf("keep the original of %s: %w", target, err)
			}
		} else if err != nil {
			return fmt.Errorf("stat %s: %w", orig, err)
		}
	}
	if opts.BackupSuffix != "" && exists {
		// replace, not WriteFile: the backup takes the source's mode and
		// owner, not those of an older backup.
		if err := replace(target+opts.BackupSuffix, prev, mode, uid, gid); err != nil {
			return fmt.Errorf("back up %s: %w", target, err)
		}
	}
	return nil
}

func replace(target string, data []byte, mode fs.FileMode, uid, gid int) (err error) {
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(target)+".regcache-*")
	if err != nil {
		return fmt.Errorf("create temporary file beside %s: %w", target, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if uid >= 0 && (uid != os.Getuid() || gid != os.Getgid()) {
		if err = tmp.Chown(uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", tmp.Name(), err)
		}
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err = os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("replace %s: %w", target, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync() // best effort: the rename is already visible
		d.Close()
	}
	return nil
}

// RemoveFile removes the file at path (through symlinks: the target goes,
// the link stays dangling) and keeps the copies opts asks for. A missing
// file is not an error.
func RemoveFile(path string, opts WriteOptions) error {
	if opts.Side {
		if err := CheckSideFile(path); err != nil {
			return err
		}
	}
	target, err := ResolvePath(path)
	if err != nil {
		return err
	}
	if err := keepCopies(target, opts); err != nil {
		return err
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", target, err)
	}
	return nil
}
