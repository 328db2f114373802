package coap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// udpTransport is a plain CoAP transport on one UDP socket (RFC 7252 §3,
// "coap://" scheme). With a fixed remote (DialUDP) it only talks to that
// peer and drops datagrams from anyone else.
type udpTransport struct {
	conn       *net.UDPConn
	remote     netip.AddrPort // zero for a listener
	readBuffer int            // receive buffer granted, bytes (0: unknown)
}

// ListenUDP opens a UDP socket on addr ("127.0.0.1:5683", ":0", "[::1]:0")
// serving any number of peers, with a receive buffer of DefaultReadBuffer
// unless WithReadBuffer says otherwise (ReadBuffer tells what the kernel
// granted).
func ListenUDP(addr string, opts ...UDPOption) (Transport, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coap: listen %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("coap: listen %q: %w", addr, err)
	}
	return NewUDPTransport(c, opts...), nil
}

// NewUDPTransport wraps an already open socket (for example one handed over
// by systemd socket activation), sizing its receive buffer like ListenUDP.
// A buffer the kernel refuses is not an error: ReadBuffer reports what it
// granted.
func NewUDPTransport(c *net.UDPConn, opts ...UDPOption) Transport {
	o := udpOpts(opts)
	got, _ := SetReadBuffer(c, o.readBuffer)
	return &udpTransport{conn: c, readBuffer: got}
}

// DialUDP opens a client-side socket bound to local (may be "" or
// "127.0.0.2:0" to pick a source address) that talks to the server at
// remote. The returned Peer is the one to address requests to.
func DialUDP(local, remote string) (Transport, Peer, error) {
	ra, err := net.ResolveUDPAddr("udp", remote)
	if err != nil {
		return nil, Peer{}, fmt.Errorf("coap: dial %q: %w", remote, err)
	}
	var la *net.UDPAddr
	if local != "" {
		if la, err = net.ResolveUDPAddr("udp", local); err != nil {
			return nil, Peer{}, fmt.Errorf("coap: dial from %q: %w", local, err)
		}
	}
	c, err := net.ListenUDP("udp", la)
	if err != nil {
		return nil, Peer{}, fmt.Errorf("coap: dial %q: %w", remote, err)
	}
	rp := unmap(ra.AddrPort())
	return &udpTransport{conn: c, remote: rp}, Peer{Addr: rp}, nil
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// ReadFrom implements Transport.
func (t *udpTransport) ReadFrom(b []byte) (int, Peer, error) {
	for {
		n, from, err := t.conn.ReadFromUDPAddrPort(b)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return 0, Peer{}, net.ErrClosed
			}
			return 0, Peer{}, err
		}
		from = unmap(from)
		if t.remote.IsValid() && from != t.remote {
			continue
		}
		return n, Peer{Addr: from}, nil
	}
}

// WriteTo implements Transport.
func (t *udpTransport) WriteTo(b []byte, to Peer) error {
	if !to.Addr.IsValid() {
		return fmt.Errorf("coap: write to a peer without address")
	}
	_, err := t.conn.WriteToUDPAddrPort(b, to.Addr)
	return err
}

// LocalAddr implements Transport.
func (t *udpTransport) LocalAddr() net.Addr { return t.conn.LocalAddr() }

// Close implements Transport.
func (t *udpTransport) Close() error { return t.conn.Close() }
