package fill_test

import (
	"net"
	"syscall"
	"unsafe"
)

// unsent is how many bytes the kernel still holds for the peer
// (SIOCOUTQ): sent but not yet acknowledged, or not yet sent.
func unsent(c *net.TCPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var n int32
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	return int(n)
}
