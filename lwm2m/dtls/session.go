package dtls

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	pion "github.com/pion/dtls/v3"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// readBufSize bounds one decrypted datagram; CoAP over DTLS stays far below
// it (block-wise transfer keeps blocks ≤ 1024 bytes, RFC 7959 §2.2).
const readBufSize = 4096

// session is one DTLS association. It is live (conn != nil, with pion's
// goroutines and one reader goroutine of ours) or parked (conn == nil,
// state holds pion's serialised State).
type session struct {
	srv        *Server
	id         uint64
	lastActive atomic.Int64 // unix nanoseconds of the last datagram either way
	created    int64        // unix nanoseconds
	evicted    atomic.Bool  // ended by admitHelloLocked before the cookie came back

	mu          sync.Mutex
	addr        netip.AddrPort
	identity    string
	offered     string // PSK identity the client offered in its handshake
	established bool
	cid         bool // the client uses our CID (RFC 9146)
	cidIssued   atomic.Bool
	closed      bool
	conn        *pion.Conn
	vc          *sessionConn
	state       []byte
	displaced   *session // session this handshake may replace (guarded by srv.mu)
	// sent counts records written since the last journalled snapshot.
	sent atomic.Uint64
}

func (s *session) touch() { s.lastActive.Store(time.Now().UnixNano()) }

func (s *session) isEstablished() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.established
}

// awaitingCookie reports a handshake whose client has not yet returned
// the HelloVerifyRequest cookie: not established, not closed, and pion has
// sent no ServerHello.
func (s *session) awaitingCookie() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.established && s.vc != nil && !s.vc.verified.Load()
}

func (s *session) isLive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

func (s *session) hasCID() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cid
}

func (s *session) currentAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *session) ident() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity
}

func (s *session) peer() coap.Peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return coap.Peer{Addr: s.addr, Session: s.id, Identity: s.identity}
}

// handshake runs on its own goroutine for a new session, then becomes its
// reader.
func (s *session) handshake(conn *pion.Conn, vc *sessionConn) {
	ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.HandshakeTimeout)
	err := conn.HandshakeContext(ctx)
	cancel()
	var identity string
	if err == nil {
		identity, err = sessionIdentity(conn)
	}
	if err != nil {
		s.srv.failed(s, err)
		return
	}
	s.mu.Lock()
	s.identity, s.cid, s.established = identity, s.cidIssued.Load(), true
	s.mu.Unlock()
	s.touch()
	s.srv.established(s, identity)
	s.read(conn, vc)
}

// sessionIdentity reads the authenticated identity from a finished handshake:
// the PSK identity, or the subject CN of the (already verified) client
// certificate.
func sessionIdentity(conn *pion.Conn) (string, error) {
	st, ok := conn.ConnectionState()
	if !ok {
		return "", errors.New("dtls: no connection state after handshake")
	}
	identity := string(st.IdentityHint)
	if len(st.PeerCertificates) > 0 {
		cert, err := x509.ParseCertificate(st.PeerCertificates[0])
		if err != nil {
			return "", fmt.Errorf("dtls: peer certificate: %w", err)
		}
		identity = cert.Subject.CommonName
	}
	if identity == "" {
		return "", errors.New("dtls: handshake finished without an identity")
	}
	return identity, nil
}

// read copies decrypted datagrams to the server until conn ends.
func (s *session) read(conn *pion.Conn, vc *sessionConn) {
	buf := make([]byte, readBufSize)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if isClosedErr(err) || vc.isClosed() {
				s.ended(conn)
				return
			}
			// Non-fatal alerts and undecryptable records surface here;
			// pion keeps the association (RFC 6347 §4.1.2.7).
			continue
		}
		s.touch()
		p := s.peerAfterRead(conn, vc)
		s.srv.deliverApp(inbound{data: append([]byte(nil), buf[:n]...), peer: p})
	}
}

// peerAfterRead notices an address change pion accepted for a CID record.
//
// pion hands a record's data to Read before it moves the connection's
// remote address to the record's source (RFC 9146 §6, which it does only
// for the newest record of a CID connection), so its remote address can
// lag behind. The datagram being processed is authenticated (its data came
// out decrypted), and one from an address other than the session's can
// only have been routed here by its CID: its source is where the device
// is now. pion gets a moment to agree (it also skips records older than
// the newest); past that, the source wins, and the session's writes go
// there (sessionConn.to) whatever pion's remote address says.
func (s *session) peerAfterRead(conn *pion.Conn, vc *sessionConn) coap.Peer {
	remote := func() netip.AddrPort {
		if ua, ok := conn.RemoteAddr().(*net.UDPAddr); ok {
			a := ua.AddrPort()
			return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		}
		return netip.AddrPort{}
	}
	to := remote()
	if src := vc.last.Load(); src != nil && src.IsValid() && *src != to {
		for deadline := time.Now().Add(2 * time.Millisecond); to != *src && time.Now().Before(deadline); {
			runtime.Gosched()
			to = remote()
		}
		to = *src
	}
	s.mu.Lock()
	from := s.addr
	moved := to.IsValid() && to != from
	if moved {
		s.addr = to
		vc.to.Store(&to)
	}
	p := coap.Peer{Addr: s.addr, Session: s.id, Identity: s.identity}
	s.mu.Unlock()
	if moved {
		s.srv.moved(s, from, to)
	}
	return p
}

// ended handles the end of a live connection: ours (parked, closed) or the
// peer's (close_notify, fatal alert), in which case the session is gone.
func (s *session) ended(conn *pion.Conn) {
	s.mu.Lock()
	mine := s.conn == conn
	if mine {
		s.conn, s.vc, s.closed = nil, nil, true
	}
	s.mu.Unlock()
	if mine {
		s.srv.forget(s)
		s.srv.log.Debug("dtls session closed by peer", "session", s.id)
		s.srv.emit(EventClosed, s.peer(), nil)
	}
}

// deliver hands a datagram from the demultiplexer to the session.
func (s *session) deliver(d datagram) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.srv.ctx.Err() != nil {
		return
	}
	if s.conn == nil {
		if err := s.resumeLocked(); err != nil {
			s.closed = true
			go s.srv.forget(s)
			s.srv.log.Warn("dtls session could not be resumed", "session", s.id, "err", err)
			return
		}
	}
	s.touch()
	if !s.vc.push(d) {
		s.srv.stats.dropped.Add(1)
	}
}

// write sends one application datagram.
func (s *session) write(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.established {
		return fmt.Errorf("dtls: write to session %x: %w", s.id, ErrNoSession)
	}
	if s.conn == nil {
		if err := s.resumeLocked(); err != nil {
			return fmt.Errorf("dtls: resume session %x: %w", s.id, err)
		}
	}
	s.touch()
	if _, err := s.conn.Write(b); err != nil {
		return fmt.Errorf("dtls: write to session %x: %w", s.id, err)
	}
	if s.sent.Add(1) >= s.srv.resnapAfter {
		if r, ok := s.snapshotLocked(); ok {
			s.srv.journal.add(r)
		}
	}
	return nil
}

// snapshot returns the session as a journal record: a live connection's
// state now, or a parked session's saved one.
func (s *session) snapshot() (parkedRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snapshotLocked()
}

func (s *session) snapshotLocked() (parkedRecord, bool) {
	if s.closed || !s.established {
		return parkedRecord{}, false
	}
	state := s.state
	if s.conn != nil {
		st, ok := s.conn.ConnectionState()
		if !ok {
			return parkedRecord{}, false
		}
		raw, err := st.MarshalBinary()
		if err != nil {
			return parkedRecord{}, false
		}
		state = raw
	}
	if len(state) == 0 {
		return parkedRecord{}, false
	}
	s.sent.Store(0)
	return parkedRecord{id: s.id, lastActive: s.lastActive.Load(), cid: s.cid,
		addr: s.addr, identity: s.identity, state: state}, true
}

// park exports an established, quiet session and drops its connection.
func (s *session) park() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.established || s.conn == nil || len(s.vc.in) > 0 {
		return false
	}
	conn, vc := s.conn, s.vc
	// Silence first: from here the old connection can emit nothing that
	// shares sequence numbers with the state exported below.
	vc.silent.Store(true)
	st, ok := conn.ConnectionState()
	if !ok {
		vc.silent.Store(false)
		return false
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		vc.silent.Store(false)
		return false
	}
	s.conn, s.vc, s.state = nil, nil, raw
	_ = vc.Close()
	go func() { _ = conn.Close() }()
	s.srv.stats.parked.Add(1)
	return true
}

// resumeLocked rebuilds the connection of a parked session from its state.
func (s *session) resumeLocked() error {
	if s.srv.ctx.Err() != nil {
		return net.ErrClosed
	}
	var st pion.State
	if err := st.UnmarshalBinary(s.state); err != nil {
		return fmt.Errorf("%w: %w", ErrBadState, err)
	}
	cfg := s.srv.base
	vc := newSessionConn(s.srv.sock)
	//nolint:staticcheck // Resume is the v3 API for an exported State; the
	// hand-off conditions of ResumeWithOptions hold: the old connection was
	// silenced before export and the state is used once (it is cleared).
	conn, err := pion.Resume(&st, vc, net.UDPAddrFromAddrPort(s.addr), &cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadState, err)
	}
	s.conn, s.vc, s.state = conn, vc, nil
	s.srv.stats.resumed.Add(1)
	s.srv.wg.Add(1)
	go func() {
		defer s.srv.wg.Done()
		s.read(conn, vc)
	}()
	return nil
}

// close ends the session locally without telling the peer.
func (s *session) close() {
	s.mu.Lock()
	conn, vc := s.conn, s.vc
	s.conn, s.vc, s.state, s.closed = nil, nil, nil, true
	s.mu.Unlock()
	if vc != nil {
		vc.silent.Store(true)
		_ = vc.Close()
	}
	if conn != nil {
		_ = conn.Close()
	}
}

func (c *sessionConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, pion.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, context.Canceled)
}
