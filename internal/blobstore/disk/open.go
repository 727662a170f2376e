package disk

import (
	"io/fs"
	"os"
	"syscall"
)

// openRead opens a committed file for reading as os.Open does, without
// os.Open's try at the netpoller: for a regular file on Linux that try is
// four fcntl(2) and a failing epoll_ctl(2) on every open, which a blob hit
// paid beside its one sendfile(2) (issue 28). os.NewFile of a blocking
// descriptor asks one fcntl(2) and does not poll it, as a regular file
// never is polled anyway.
func openRead(p string) (*os.File, error) {
	for {
		fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}
