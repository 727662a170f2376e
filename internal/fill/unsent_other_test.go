//go:build !linux

package fill_test

import (
	"net"
	"time"
)

// unsent cannot ask the kernel here; give the peer a moment instead.
func unsent(*net.TCPConn) int {
	time.Sleep(100 * time.Millisecond)
	return 0
}
