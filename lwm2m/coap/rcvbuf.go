package coap

import (
	"fmt"
	"net"
)

// DefaultReadBuffer is the UDP receive buffer ListenUDP asks for: about
// 3,000 full-size datagrams, a second of a 10,000-device fleet's
// notifications, so a burst waits in the kernel instead of being dropped
// there while the read loop catches up. Linux caps what an unprivileged
// process gets at net.core.rmem_max (208 KiB by default); the Debian
// package raises it (packaging/sysctl.d).
const DefaultReadBuffer = 4 << 20

// UDPOption configures ListenUDP and NewUDPTransport.
type UDPOption func(*udpOptions)

type udpOptions struct {
	readBuffer int
}

// WithReadBuffer sets the receive buffer to ask for, in bytes; 0 keeps
// the kernel's default.
func WithReadBuffer(n int) UDPOption {
	return func(o *udpOptions) { o.readBuffer = n }
}

func udpOpts(opts []UDPOption) udpOptions {
	o := udpOptions{readBuffer: DefaultReadBuffer}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// SetReadBuffer asks the kernel for a receive buffer of n bytes on c and
// returns the size it granted (what SO_RCVBUF reads back, without Linux's
// doubling for its bookkeeping). Above net.core.rmem_max it tries
// SO_RCVBUFFORCE, which needs CAP_NET_ADMIN; without it the granted size
// is rmem_max. Callers log the result and compare it with n.
func SetReadBuffer(c *net.UDPConn, n int) (int, error) {
	if n <= 0 {
		return readBuffer(c)
	}
	if err := c.SetReadBuffer(n); err != nil {
		return 0, fmt.Errorf("coap: receive buffer of %d bytes: %w", n, err)
	}
	got, err := readBuffer(c)
	if err != nil || got >= n {
		return got, err
	}
	if forceReadBuffer(c, n) == nil {
		return readBuffer(c)
	}
	return got, nil
}

// ReadBuffer reports the receive buffer the kernel granted to a transport
// made by ListenUDP or NewUDPTransport (0 for any other, or when unknown).
func ReadBuffer(t Transport) int {
	if u, ok := t.(*udpTransport); ok {
		return u.readBuffer
	}
	return 0
}
