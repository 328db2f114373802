package dtls

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/transport/v5/deadline"
)

// datagram is one record-bearing UDP payload routed to a session.
type datagram struct {
	data []byte
	from netip.AddrPort
}

// sessionConn is the net.PacketConn pion runs one session on: reads come
// from the demultiplexer through a small queue, writes go straight to the
// shared UDP socket.
//
// A silent sessionConn drops every write. Parking sets it before taking
// the state snapshot, so nothing the old connection still sends (a
// close_notify, a retransmitted Finished) can reuse a record sequence
// number the restored connection will use — the hand-off condition pion's
// ResumeWithOptions documents.
type sessionConn struct {
	sock   net.PacketConn
	in     chan datagram
	closed chan struct{}
	once   sync.Once
	silent atomic.Bool
	rdl    *deadline.Deadline
	// last is the source of the datagram pion read most recently, the
	// one whose records it is processing (see session.peerAfterRead).
	last atomic.Pointer[netip.AddrPort]
	// to, once set, is where writes go instead of pion's remote address:
	// the session's address, which follows the device (RFC 9146 §6).
	to atomic.Pointer[netip.AddrPort]
	// verified is set once pion sends its ServerHello: it only does
	// after the client returned the HelloVerifyRequest's cookie, which
	// proves the client receives at its address (RFC 6347 §4.2.1).
	verified atomic.Bool
}

// sessionQueue is the number of datagrams a session buffers between the
// demultiplexer and pion; a handshake flight fits, a flood is dropped.
const sessionQueue = 16

func newSessionConn(sock net.PacketConn) *sessionConn {
	return &sessionConn{
		sock:   sock,
		in:     make(chan datagram, sessionQueue),
		closed: make(chan struct{}),
		rdl:    deadline.New(),
	}
}

// push queues a datagram without blocking the demultiplexer.
func (c *sessionConn) push(d datagram) bool {
	select {
	case <-c.closed:
		return false
	default:
	}
	select {
	case c.in <- d:
		return true
	default:
		return false
	}
}

func (c *sessionConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case d := <-c.in:
		from := d.from
		c.last.Store(&from)
		return copy(b, d.data), net.UDPAddrFromAddrPort(d.from), nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rdl.Done():
		return 0, nil, errTimeout{}
	}
}

func (c *sessionConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if c.silent.Load() {
		return len(b), nil
	}
	if to := c.to.Load(); to != nil {
		addr = net.UDPAddrFromAddrPort(*to)
	}
	if !c.verified.Load() && isServerHello(b) {
		c.verified.Store(true)
	}
	return c.sock.WriteTo(b, addr)
}

func (c *sessionConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *sessionConn) LocalAddr() net.Addr { return c.sock.LocalAddr() }

func (c *sessionConn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	return nil
}

func (c *sessionConn) SetReadDeadline(t time.Time) error {
	c.rdl.Set(t)
	return nil
}

// Writes go to a UDP socket and do not block long enough to need one.
func (c *sessionConn) SetWriteDeadline(time.Time) error { return nil }

// errTimeout is the net.Error a read deadline produces.
type errTimeout struct{}

func (errTimeout) Error() string   { return "dtls: i/o timeout" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }
