package clientconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// LockSuffix names the lock file beside a configuration file.
const LockSuffix = ".regcache-lock"

// Lock takes an exclusive flock on <target>.regcache-lock beside the file
// path resolves to, waiting for another regcache run that holds it, so that
// concurrent runs do not lose each other's read-modify-write. The lock file
// is created (0600, with missing parent directories) and removed again by
// unlock, so nothing of it is left beside the configuration once the
// command ends.
//
// Removing a lock file could let two runs hold "the" lock at once (one on
// the removed file, one on a new one), so a run that gets the flock checks
// that the name still leads to the file it locked, and starts again if not;
// unlock removes the name before it releases the flock.
func Lock(path string) (unlock func(), err error) {
	target, err := ResolvePath(path)
	if err != nil {
		return nil, err
	}
	name := target + LockSuffix
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", name, err)
	}
	for {
		f, real, err := openLock(name)
		if err != nil {
			return nil, err
		}
		// The flock is on the file; the name must still lead to it.
		held, err := os.Lstat(real)
		fi, ferr := f.Stat()
		if ferr != nil {
			f.Close()
			return nil, fmt.Errorf("stat lock %s: %w", name, ferr)
		}
		if err == nil && os.SameFile(held, fi) {
			return func() {
				_ = os.Remove(real) // before the flock goes: a waiter then sees a stale file
				f.Close()           // closing the descriptor releases the flock
			}, nil
		}
		f.Close() // the holder before us removed it: lock the new one
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("stat lock %s: %w", name, err)
		}
	}
}

// openLock opens (creating) the lock file and waits for its flock.
func openLock(name string) (f *os.File, real string, err error) {
	if err := CheckSideFile(name); err != nil {
		return nil, "", err
	}
	// Open where a link (checked to stay in the directory) leads, without
	// following any link found there now: one swapped in after the check
	// is refused, not followed.
	if real, err = ResolvePath(name); err != nil {
		return nil, "", err
	}
	if f, err = os.OpenFile(real, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600); err != nil {
		return nil, "", fmt.Errorf("open lock %s: %w", name, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("lock %s: %w", name, err)
	}
	return f, real, nil
}
