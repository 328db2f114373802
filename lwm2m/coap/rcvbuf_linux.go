package coap

import (
	"net"
	"syscall"
)

// readBuffer reads SO_RCVBUF back; Linux reports twice the size set, the
// other half being its bookkeeping (socket(7)).
func readBuffer(c *net.UDPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, serr
	}
	return v / 2, nil
}

// forceReadBuffer sets SO_RCVBUFFORCE, which ignores net.core.rmem_max
// when the process has CAP_NET_ADMIN (socket(7)).
func forceReadBuffer(c *net.UDPConn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	return serr
}
