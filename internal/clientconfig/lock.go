package clientconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// LockSuffix names the lock file beside a configuration file.
const LockSuffix = ".regcache-lock"

// Lock takes an exclusive flock on <target>.regcache-lock beside the file
// path resolves to, waiting for another regcache run that holds it, so that
// concurrent runs do not lose each other's read-modify-write. The lock file
// is created (0600, with missing parent directories) and left in place: a
// removed lock file could be locked twice. unlock releases the lock.
func Lock(path string) (unlock func(), err error) {
	target, err := ResolvePath(path)
	if err != nil {
		return nil, err
	}
	name := target + LockSuffix
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return nil, fmt.Errorf("create directory for %s: %w", name, err)
	}
	if err := CheckSideFile(name); err != nil {
		return nil, err
	}
	// Open where a link (checked to stay in the directory) leads, without
	// following any link found there now: one swapped in after the check
	// is refused, not followed.
	real, err := ResolvePath(name)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(real, os.O_RDWR|os.O_CREATE|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", name, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the flock
}
