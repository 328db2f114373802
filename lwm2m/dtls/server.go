package dtls

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pion "github.com/pion/dtls/v3"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// Server is the CoAPS side of the appliance: a coap.Transport over one UDP
// socket that terminates DTLS for many devices.
//
// Every datagram is routed by the demultiplexer (Run): a tls12_cid record by
// its Connection ID, which this server chose as the session id (RFC 9146
// §3), anything else by source address; an epoch-0 ClientHello from an
// address without a session in progress starts a new one. Sessions idle for
// Config.ParkAfter are parked (see package doc) and revived by their next
// record or by a WriteTo.
type Server struct {
	cfg  Config
	sock net.PacketConn
	log  *slog.Logger
	base pion.Config

	mu         sync.Mutex
	byID       map[uint64]*session
	byAddr     map[netip.AddrPort]*session
	byIdentity map[string]*session
	// older is each identity's previous session, kept while the newest
	// lives: Zephyr's firmware pull client opens a second session with
	// the device's own credentials for the download (Object 5 Package
	// URI), which must not end the LwM2M session.
	older       map[string]*session
	handshaking int
	// halfOpen lists handshakes in the order they started, for
	// admitHelloLocked to evict the oldest unverified one; entries that
	// got past the cookie exchange or ended are skipped and dropped.
	halfOpen []*session

	inbound   chan inbound
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	stats      serverStats
	readBuffer int // receive buffer the kernel granted, bytes
	cookies    cookieJar

	// journal keeps sessions across a crash (journal.go); nil without
	// Config.SessionFile.
	journal *journal
	// resnapAfter is resnapshotAfter (lowered by tests).
	resnapAfter uint64
}

type inbound struct {
	data []byte
	peer coap.Peer
}

// Stats are cumulative counters, for benchmarks and the status page.
type Stats struct {
	Sessions         int // established or parked now
	Live             int // with a live connection now
	Handshaking      int
	HandshakesOK     uint64
	HandshakesFailed uint64
	Parked           uint64
	Resumed          uint64
	Dropped          uint64 // datagrams dropped because a session's queue was full
	// Evicted counts handshakes ended before the client returned the
	// cookie, to make room for a new ClientHello (admitHelloLocked).
	Evicted uint64
	// Journaled counts session states made durable in the crash journal
	// (journal.go).
	Journaled uint64
	// StatelessHellos counts ClientHellos answered with a stateless
	// HelloVerifyRequest during a flood (cookie.go); CookiesVerified
	// those that came back with a valid cookie.
	StatelessHellos, CookiesVerified uint64
}

type serverStats struct {
	handshakesOK, handshakesFailed, parked, resumed, dropped, evicted atomic.Uint64
	statelessHellos, cookiesVerified                                  atomic.Uint64
}

// Listen opens a UDP socket on addr ("127.0.0.1:5684") and returns a Server
// on it. Run must be called to serve.
func Listen(addr string, cfg Config) (*Server, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("dtls: listen %s: %w", addr, err)
	}
	s, err := New(pc, cfg)
	if err != nil {
		_ = pc.Close()
		return nil, err
	}
	return s, nil
}

// New returns a Server on an existing socket (e.g. from systemd socket
// activation). The Server owns the socket from now on.
func New(sock net.PacketConn, cfg Config) (*Server, error) {
	if err := cfg.normalise(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:        cfg,
		sock:       sock,
		log:        cfg.Logger.With("component", "dtls", "addr", sock.LocalAddr().String()),
		byID:       make(map[uint64]*session),
		byAddr:     make(map[netip.AddrPort]*session),
		byIdentity: make(map[string]*session),
		older:      make(map[string]*session),
		inbound:    make(chan inbound, 1024),
		done:       make(chan struct{}),

		resnapAfter: resnapshotAfter,
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if uc, ok := sock.(*net.UDPConn); ok {
		// Bursts of handshakes (a fleet reconnecting after an outage)
		// overflow the kernel's default buffer. What was granted is
		// reported by ReadBuffer; less than asked is not an error.
		s.readBuffer, _ = coap.SetReadBuffer(uc, cfg.ReadBuffer)
	}
	s.base = pion.Config{
		CipherSuites:         cfg.CipherSuites,
		ExtendedMasterSecret: pion.RequestExtendedMasterSecret,
		MTU:                  cfg.MTU,
		LoggerFactory:        pionLogs{s.log},
		FlightInterval:       time.Second,
	}
	if cfg.PSK != nil {
		s.base.PSK = func(hint []byte) ([]byte, error) {
			key, err := cfg.PSK(string(hint))
			if err != nil {
				return nil, err
			}
			if len(key) == 0 {
				return nil, fmt.Errorf("identity %q: %w", hint, ErrUnknownIdentity)
			}
			return key, nil
		}
	}
	if cfg.Certificate != nil {
		s.base.Certificates = append(s.base.Certificates, *cfg.Certificate)
		s.base.ClientCAs = cfg.ClientCAs
		s.base.ClientAuth = pion.RequireAndVerifyClientCert
		s.base.VerifyPeerCertificate = s.verifyPeer
	}
	// Validate once here rather than on the first ClientHello.
	probe := s.base
	if _, err := pion.Server(nopConn{}, &net.UDPAddr{}, &probe); err != nil {
		return nil, fmt.Errorf("dtls: configuration: %w", err)
	}
	if cfg.SessionFile != "" {
		s.restoreSessions(cfg.SessionFile)
	}
	return s, nil
}

// verifyPeer runs after pion has verified the chain against ClientCAs (and
// the validity period): it requires a CN to name the device and lets the
// appliance refuse revoked certificates.
func (s *Server) verifyPeer(_ [][]byte, chains [][]*x509.Certificate) error {
	if len(chains) == 0 || len(chains[0]) == 0 {
		return errors.New("dtls: no verified certificate chain")
	}
	leaf := chains[0][0]
	if leaf.Subject.CommonName == "" {
		return ErrNoCommonName
	}
	if s.cfg.VerifyPeer != nil {
		return s.cfg.VerifyPeer(leaf)
	}
	return nil
}

// Run serves until ctx is cancelled or Close is called; it returns nil then,
// or the socket's error.
func (s *Server) Run(ctx context.Context) error {
	// The janitor joins the wait group only while the server is open:
	// Close may already be waiting on it (a start that failed elsewhere
	// cancels ctx at once), and an Add racing that Wait is a misuse of
	// sync.WaitGroup (found by the race detector in TestServePortInUse).
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return nil
	default:
	}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.janitor()
	}()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	// Return only once Close has finished (sessions saved, goroutines
	// gone), whoever started it.
	defer s.Close()

	buf := make([]byte, 64<<10)
	for {
		n, addr, err := s.sock.ReadFrom(buf)
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			_ = s.Close()
			return fmt.Errorf("dtls: read: %w", err)
		}
		ua, ok := addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		s.dispatch(buf[:n], ua.AddrPort())
	}
}

// dispatch routes one datagram. Malformed datagrams and records for no
// known session are dropped without a reply (RFC 6347 §4.1.2.7).
func (s *Server) dispatch(b []byte, from netip.AddrPort) {
	h, err := parseRecordHeader(b)
	if err != nil {
		return
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	var sess *session
	s.mu.Lock()
	if h.contentType == contentCID {
		if id, ok := sessionIDFromCID(h.cid); ok {
			sess = s.byID[id]
		}
	}
	if sess == nil {
		sess = s.byAddr[from]
		if isClientHello(b) {
			fixClientHelloVersions(b)
			if sess == nil || sess.isEstablished() {
				if s.needCookieLocked(from) {
					s.mu.Unlock()
					s.statelessHello(b, from)
					return
				}
				sess = s.newSessionLocked(from, sess)
			}
		}
	}
	s.mu.Unlock()
	if sess == nil {
		return
	}
	sess.deliver(datagram{data: append([]byte(nil), b...), from: from})
}

// needCookieLocked reports whether a ClientHello from addr gets a
// stateless HelloVerifyRequest rather than a handshake: during a flood
// (Config.HelloCookieAt), from an address that has not returned a cookie.
func (s *Server) needCookieLocked(from netip.AddrPort) bool {
	if at := s.cfg.HelloCookieAt; at >= 0 && s.handshaking < at {
		return false
	}
	return !s.cookies.isVerified(from.Addr(), time.Now())
}

// statelessHello answers a ClientHello without keeping anything: a
// HelloVerifyRequest with a cookie, or, for a hello that returned a valid
// one, the alert that makes the now verified client start over (cookie.go).
// It never sends more than it received.
func (s *Server) statelessHello(b []byte, from netip.AddrPort) {
	f, ok := parseHello(b)
	if !ok {
		return
	}
	to := net.UDPAddrFromAddrPort(from)
	now := time.Now()
	if len(f.cookie) > 0 && s.cookies.check(from, f, now) {
		s.stats.cookiesVerified.Add(1)
		_, _ = s.sock.WriteTo(restartAlert(f.recordSeq), to)
		return
	}
	hvr := helloVerifyRequest(f, s.cookies.cookie(from, f.params, now))
	if len(hvr) > len(b) {
		return
	}
	s.stats.statelessHellos.Add(1)
	_, _ = s.sock.WriteTo(hvr, to)
}

// newSessionLocked starts a handshake for a ClientHello from addr. A session
// already established at that address stays reachable by its id and CID
// until the new handshake completes (RFC 6347 §4.2.8: a new handshake from
// the same address must not tear down the old association before the client
// proves it is there).
func (s *Server) newSessionLocked(addr netip.AddrPort, old *session) *session {
	if len(s.byID) >= s.cfg.MaxSessions || s.ctx.Err() != nil || !s.admitHelloLocked() {
		return nil
	}
	id := s.newIDLocked()
	sess := &session{srv: s, id: id, addr: addr, displaced: old, created: time.Now().UnixNano()}
	sess.touch()
	cfg := s.base
	if psk := s.base.PSK; psk != nil {
		// Remember the identity the client offered, so that a failed
		// handshake (most often a wrong key) can be logged with it.
		cfg.PSK = func(hint []byte) ([]byte, error) {
			sess.mu.Lock()
			sess.offered = string(hint)
			sess.mu.Unlock()
			return psk(hint)
		}
	}
	// pion asks for a CID only when the client offered the extension.
	cfg.ConnectionIDGenerator = func() []byte {
		sess.cidIssued.Store(true)
		return cidForSession(id)
	}
	vc := newSessionConn(s.sock)
	conn, err := pion.Server(vc, net.UDPAddrFromAddrPort(addr), &cfg)
	if err != nil {
		s.log.Warn("dtls session setup failed", "peer", addr, "err", err)
		return nil
	}
	sess.conn, sess.vc = conn, vc
	s.byID[id] = sess
	s.byAddr[addr] = sess
	s.handshaking++
	s.trackHalfOpenLocked(sess)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		sess.handshake(conn, vc)
	}()
	return sess
}

func (s *Server) newIDLocked() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		id := binary.BigEndian.Uint64(b[:])
		if _, taken := s.byID[id]; id != 0 && !taken {
			return id
		}
	}
}

// established is called once a handshake succeeded.
func (s *Server) established(sess *session, identity string) {
	s.stats.handshakesOK.Add(1)
	var evict []*session
	s.mu.Lock()
	s.handshaking--
	if old := sess.displaced; old != nil {
		sess.displaced = nil
		if !old.hasCID() {
			evict = append(evict, old)
		}
	}
	// At most two associations per identity: a device that handshakes
	// again (reboot, lost state, a firmware download's own session) keeps
	// its previous session and loses the one before, which bounds memory
	// and leaves at most one stale session, never written to by the
	// LwM2M server (requests follow the registration's session).
	if prev, ok := s.byIdentity[identity]; ok && prev != sess {
		if old := s.older[identity]; old != nil && old != sess && old != prev {
			evict = append(evict, old)
		}
		s.older[identity] = prev
	}
	s.byIdentity[identity] = sess
	for _, e := range evict {
		s.forgetLocked(e)
	}
	s.mu.Unlock()
	for _, e := range evict {
		e.close()
		s.emit(EventReplaced, e.peer(), nil)
	}
	if r, ok := sess.snapshot(); ok {
		s.journal.add(r)
	}
	s.log.Debug("dtls session established", "peer", sess.currentAddr(), "identity", identity, "session", sess.id)
	s.emit(EventEstablished, sess.peer(), nil)
}

func (s *Server) emit(kind EventKind, p coap.Peer, err error) {
	if s.cfg.OnEvent != nil {
		s.cfg.OnEvent(Event{Kind: kind, Peer: p, Err: err})
	}
}

// failed is called when a handshake did not complete.
func (s *Server) failed(sess *session, err error) {
	s.stats.handshakesFailed.Add(1)
	evicted := sess.evicted.Load()
	s.mu.Lock()
	s.handshaking--
	s.forgetLocked(sess)
	if old := sess.displaced; old != nil && s.byID[old.id] == old {
		if a := old.currentAddr(); s.byAddr[a] == nil {
			s.byAddr[a] = old
		}
	}
	s.mu.Unlock()
	sess.close()
	peer := coap.Peer{Addr: sess.currentAddr(), Session: sess.id}
	if !errors.Is(err, net.ErrClosed) && !evicted {
		sess.mu.Lock()
		offered := sess.offered
		sess.mu.Unlock()
		if offered != "" && !errors.Is(err, ErrUnknownIdentity) {
			// A known identity whose handshake did not finish: with
			// PSK that is almost always a key that does not match.
			s.log.Warn("dtls handshake failed", "peer", sess.currentAddr(), "psk_identity", offered,
				"hint", "the device's PSK does not match the one provisioned for this identity", "err", err)
			peer.Identity, err = offered, fmt.Errorf("%w: %w", ErrKeyMismatch, err)
		} else {
			s.log.Warn("dtls handshake failed", "peer", sess.currentAddr(), "psk_identity", offered, "err", err)
		}
	}
	s.emit(EventFailed, peer, err)
}

// forgetLocked removes every route to sess.
func (s *Server) forgetLocked(sess *session) {
	if s.byID[sess.id] == sess {
		delete(s.byID, sess.id)
		if sess.isEstablished() {
			s.journal.add(parkedRecord{id: sess.id, addr: sess.currentAddr()})
		}
	}
	if a := sess.currentAddr(); s.byAddr[a] == sess {
		delete(s.byAddr, a)
	}
	if id := sess.ident(); id != "" && s.byIdentity[id] == sess {
		delete(s.byIdentity, id)
		if o := s.older[id]; o != nil {
			s.byIdentity[id] = o
			delete(s.older, id)
		}
	} else if id != "" && s.older[id] == sess {
		delete(s.older, id)
	}
}

// forget drops a session that ended (peer closed it, fatal alert, expiry).
func (s *Server) forget(sess *session) {
	s.mu.Lock()
	s.forgetLocked(sess)
	s.mu.Unlock()
}

// moved records that an authenticated CID record came from a new address
// (RFC 9146 §6: only after the record was verified and is the newest).
func (s *Server) moved(sess *session, from, to netip.AddrPort) {
	s.mu.Lock()
	if s.byAddr[from] == sess {
		delete(s.byAddr, from)
	}
	if s.byID[sess.id] == sess {
		s.byAddr[to] = sess
	}
	s.mu.Unlock()
	s.log.Debug("dtls peer address changed", "session", sess.id, "from", from, "to", to)
}

func (s *Server) deliverApp(in inbound) {
	select {
	case s.inbound <- in:
	case <-s.done:
	}
}

// ReadFrom returns the next decrypted datagram (coap.Transport).
func (s *Server) ReadFrom(b []byte) (int, coap.Peer, error) {
	select {
	case in := <-s.inbound:
		return copy(b, in.data), in.peer, nil
	case <-s.done:
		return 0, coap.Peer{}, net.ErrClosed
	}
}

// WriteTo encrypts and sends one datagram on the peer's session, reviving
// it if it is parked (coap.Transport).
func (s *Server) WriteTo(b []byte, to coap.Peer) error {
	if to.Session == 0 {
		return fmt.Errorf("dtls: write to %s: not a DTLS peer: %w", to.Addr, ErrNoSession)
	}
	s.mu.Lock()
	sess := s.byID[to.Session]
	s.mu.Unlock()
	if sess == nil {
		return fmt.Errorf("dtls: write to session %x: %w", to.Session, ErrNoSession)
	}
	return sess.write(b)
}

// ReadBuffer is the UDP receive buffer the kernel granted, in bytes (0
// when unknown).
func (s *Server) ReadBuffer() int { return s.readBuffer }

// LocalAddr is the UDP address the server listens on.
func (s *Server) LocalAddr() net.Addr { return s.sock.LocalAddr() }

// Close stops the server, closes every session without notifying the
// peers (their parked state dies with the process either way) and the
// socket, and unblocks ReadFrom.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock() // orders this against Run's wg.Add
		close(s.done)
		s.mu.Unlock()
		s.cancel()
		err = s.sock.Close()
		s.journal.close()
		if s.cfg.SessionFile != "" {
			if serr := s.saveSessions(s.cfg.SessionFile); serr != nil {
				// The journal still holds them, for the next start.
				s.log.Warn("dtls sessions not saved", "err", serr)
			} else {
				s.journal.remove()
			}
		}
		s.mu.Lock()
		all := make([]*session, 0, len(s.byID))
		for _, sess := range s.byID {
			all = append(all, sess)
		}
		s.mu.Unlock()
		for _, sess := range all {
			sess.close()
		}
		s.wg.Wait()
	})
	return err
}

// Peer returns the coap.Peer of a live or parked session.
func (s *Server) Peer(session uint64) (coap.Peer, bool) {
	s.mu.Lock()
	sess := s.byID[session]
	s.mu.Unlock()
	if sess == nil || !sess.isEstablished() {
		return coap.Peer{}, false
	}
	return sess.peer(), true
}

// Stats returns current counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{Handshaking: s.handshaking}
	for _, sess := range s.byID {
		if sess.isEstablished() {
			st.Sessions++
			if sess.isLive() {
				st.Live++
			}
		}
	}
	s.mu.Unlock()
	st.HandshakesOK = s.stats.handshakesOK.Load()
	st.HandshakesFailed = s.stats.handshakesFailed.Load()
	st.Parked = s.stats.parked.Load()
	st.Resumed = s.stats.resumed.Load()
	st.Dropped = s.stats.dropped.Load()
	st.Evicted = s.stats.evicted.Load()
	st.StatelessHellos = s.stats.statelessHellos.Load()
	st.CookiesVerified = s.stats.cookiesVerified.Load()
	if s.journal != nil {
		st.Journaled = s.journal.written.Load()
	}
	return st
}

// ParkIdle parks every established session idle for at least d now and
// returns how many it parked. The janitor calls it with Config.ParkAfter;
// tests and benchmarks call it directly.
func (s *Server) ParkIdle(d time.Duration) int {
	s.mu.Lock()
	cands := make([]*session, 0, len(s.byID))
	for _, sess := range s.byID {
		cands = append(cands, sess)
	}
	s.mu.Unlock()
	n := 0
	cutoff := time.Now().Add(-d).UnixNano()
	for _, sess := range cands {
		if sess.lastActive.Load() <= cutoff && sess.park() {
			n++
		}
	}
	return n
}

// pressureIdle is the least idle time after which a session is parked when
// there are more than MaxLive live sessions: long enough for the exchange
// in flight, and a session parked too early costs only a resume (about
// 0.2 ms of CPU, BenchmarkParkResume).
const pressureIdle = 250 * time.Millisecond

// janitorPeriod is how often idle sessions are parked: scanning 10,000
// sessions takes well under a millisecond.
const janitorPeriod = 250 * time.Millisecond

// relieve parks the longest-idle live sessions while more than MaxLive are
// live (a fleet reconnecting at once), so memory stays bounded by MaxLive
// live sessions plus small parked ones.
func (s *Server) relieve() int {
	type cand struct {
		sess *session
		last int64
	}
	s.mu.Lock()
	live := make([]cand, 0, len(s.byID))
	for _, sess := range s.byID {
		if sess.isLive() && sess.isEstablished() {
			live = append(live, cand{sess, sess.lastActive.Load()})
		}
	}
	s.mu.Unlock()
	excess := len(live) - s.cfg.MaxLive
	if excess <= 0 {
		return 0
	}
	slices.SortFunc(live, func(a, b cand) int { return cmp.Compare(a.last, b.last) })
	cutoff := time.Now().Add(-pressureIdle).UnixNano()
	n := 0
	for _, c := range live {
		if n >= excess || c.last > cutoff {
			break
		}
		if c.sess.park() {
			n++
		}
	}
	return n
}

func (s *Server) janitor() {
	period := min(s.cfg.ParkAfter/2, janitorPeriod)
	period = max(period, 50*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.ParkIdle(s.cfg.ParkAfter)
		s.relieve()
		s.reapHalfOpen()
		s.expire(time.Now().Add(-s.cfg.SessionLifetime))
	}
}

// reapHalfOpen ends handshakes that never got past the cookie within
// HelloTimeout: a real client answers the HelloVerifyRequest at once (RFC
// 6347 §4.2.1), a spoofed source never does, however often it repeats its
// hello. It keeps a flood of
// forged ClientHellos from holding MaxHandshakes for HandshakeTimeout.
func (s *Server) reapHalfOpen() {
	cutoff := time.Now().Add(-s.cfg.HelloTimeout).UnixNano()
	var stale []*session
	s.mu.Lock()
	for _, sess := range s.byID {
		if sess.created < cutoff && sess.awaitingCookie() {
			stale = append(stale, sess)
		}
	}
	s.mu.Unlock()
	for _, sess := range stale {
		sess.close()
	}
}

// expire forgets parked sessions with no traffic since cutoff.
func (s *Server) expire(cutoff time.Time) {
	c := cutoff.UnixNano()
	s.mu.Lock()
	for _, sess := range s.byID {
		if sess.lastActive.Load() < c && !sess.isLive() {
			s.forgetLocked(sess)
		}
	}
	s.mu.Unlock()
}

// nopConn lets New validate a pion configuration without a socket.
type nopConn struct{}

func (nopConn) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, net.ErrClosed }
func (nopConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (nopConn) Close() error                              { return nil }
func (nopConn) LocalAddr() net.Addr                       { return &net.UDPAddr{} }
func (nopConn) SetDeadline(time.Time) error               { return nil }
func (nopConn) SetReadDeadline(time.Time) error           { return nil }
func (nopConn) SetWriteDeadline(time.Time) error          { return nil }

// admitHelloLocked makes room for a new handshake; s.mu is held. Under
// MaxHandshakes it admits at once. At the limit it ends the oldest
// handshake whose client has not returned the HelloVerifyRequest cookie:
// a spoofed source never does, a real client does within a round trip
// (RFC 6347 §4.2.1), so a flood of forged ClientHellos only displaces
// other forged ones and real devices still get through. pion keeps the
// cookie state, so a handshake exists from the first ClientHello on; this
// bounds how many and how long. Handshakes past the cookie are never
// evicted; with MaxHandshakes of them in progress new ones are refused
// (the client retransmits). Evicted ones finish closing on their own
// goroutine, so up to twice MaxHandshakes may exist for a moment.
func (s *Server) admitHelloLocked() bool {
	if s.handshaking < s.cfg.MaxHandshakes {
		return true
	}
	if s.handshaking >= 2*s.cfg.MaxHandshakes {
		return false
	}
	for len(s.halfOpen) > 0 {
		old := s.halfOpen[0]
		s.halfOpen[0] = nil
		s.halfOpen = s.halfOpen[1:]
		if !old.awaitingCookie() || s.byID[old.id] != old {
			continue // past the cookie, or already gone
		}
		old.evicted.Store(true)
		s.forgetLocked(old)
		s.stats.evicted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			old.close()
		}()
		return true
	}
	return false
}

// trackHalfOpenLocked remembers a new handshake for eviction, dropping
// from the list those past the cookie or gone once it has grown to twice
// the handshakes allowed (so it stays bounded without a scan per hello).
func (s *Server) trackHalfOpenLocked(sess *session) {
	if len(s.halfOpen) >= 2*s.cfg.MaxHandshakes {
		keep := s.halfOpen[:0]
		for _, h := range s.halfOpen {
			if h.awaitingCookie() && s.byID[h.id] == h {
				keep = append(keep, h)
			}
		}
		clear(s.halfOpen[len(keep):])
		s.halfOpen = keep
	}
	s.halfOpen = append(s.halfOpen, sess)
}
