package coap

import (
	"net"
	"net/netip"
)

// Transport carries CoAP datagrams between this endpoint and many peers. A
// plain UDP socket is one; a DTLS listener, whose sessions each behave like a
// secured datagram path, is another (lwm2m/dtls). The CoAP layer above does
// deduplication, retransmission, tokens and block-wise transfer the same way
// for both (RFC 7252 §4, §5; RFC 6347 for DTLS).
type Transport interface {
	// ReadFrom blocks until the next datagram arrives and copies it into b.
	// It returns net.ErrClosed after Close.
	ReadFrom(b []byte) (n int, from Peer, err error)
	// WriteTo sends one datagram to a peer that was seen by ReadFrom (or, for
	// a client transport, the one server it is bound to).
	WriteTo(b []byte, to Peer) error
	// LocalAddr is the address the transport listens on.
	LocalAddr() net.Addr
	// Close stops the transport and unblocks ReadFrom. It may be called
	// more than once; a call made while another runs returns after it.
	Close() error
}

// Peer identifies the remote side of a datagram. For plain CoAP it is the
// source address. For DTLS it is the session: Session is non-zero and stays
// the same when the peer's address changes (Connection ID, RFC 9146), and
// Identity is the authenticated PSK identity or certificate subject CN.
// Peer is comparable; use Key to index per-peer state.
type Peer struct {
	Addr     netip.AddrPort
	Session  uint64
	Identity string
}

// PeerKey indexes per-peer state: the session for DTLS, the address for UDP.
type PeerKey struct {
	Addr    netip.AddrPort
	Session uint64
}

// Key returns the per-peer state key.
func (p Peer) Key() PeerKey {
	if p.Session != 0 {
		return PeerKey{Session: p.Session}
	}
	return PeerKey{Addr: p.Addr}
}

// Secure reports whether the peer came over DTLS.
func (p Peer) Secure() bool { return p.Session != 0 }
