package dtls

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pion "github.com/pion/dtls/v3"
)

var devKey = []byte("0123456789abcdef")

func pskServer(t *testing.T) *echoServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey, "dev-2": []byte("fedcba9876543210")}.lookup
	// A wrong key shows on the server only as a handshake that never
	// completes (the client's Finished does not decrypt and is dropped,
	// RFC 6347 §4.1.2.7), so keep that wait short.
	cfg.HandshakeTimeout = 3 * time.Second
	return startServer(t, cfg)
}

func dial(t *testing.T, addr string, cfg ClientConfig) *Client {
	t.Helper()
	cfg.HandshakeTimeout = 10 * time.Second
	c, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestPSKRoundTrip(t *testing.T) {
	for _, suite := range []pion.CipherSuiteID{pion.TLS_PSK_WITH_AES_128_CCM_8, pion.TLS_PSK_WITH_AES_128_GCM_SHA256} {
		t.Run(suite.String(), func(t *testing.T) {
			srv := pskServer(t)
			c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey, CipherSuites: []pion.CipherSuiteID{suite}})
			if got := roundTrip(t, c, "hello"); got != "dev-1|hello" {
				t.Fatalf("echo = %q", got)
			}
			p := <-srv.peers
			if p.Session == 0 || p.Identity != "dev-1" || int(p.Addr.Port()) != c.LocalAddr().(*net.UDPAddr).Port {
				t.Fatalf("peer = %+v, client at %s", p, c.LocalAddr())
			}
			if st := srv.Stats(); st.Sessions != 1 || st.HandshakesOK != 1 {
				t.Fatalf("stats = %+v", st)
			}
		})
	}
}

func TestPSKRefusals(t *testing.T) {
	srv := pskServer(t)
	cases := []struct {
		name string
		cfg  ClientConfig
		want error
	}{
		{"unknown identity", ClientConfig{PSKIdentity: "stranger", PSK: devKey}, ErrUnknownIdentity},
		// The server's alert is encrypted under keys the client does not
		// share, so the client only sees its handshake time out.
		{"wrong key", ClientConfig{PSKIdentity: "dev-1", PSK: []byte("not-the-right-k!")}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.HandshakeTimeout = 3 * time.Second
			c, err := Dial(context.Background(), srv.LocalAddr().String(), tc.cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("handshake succeeded")
			}
			ev := srv.next(t, EventFailed)
			if ev.Err == nil || tc.want != nil && !errors.Is(ev.Err, tc.want) {
				t.Fatalf("failure = %v, want %v", ev.Err, tc.want)
			}
			if st := srv.Stats(); st.Sessions != 0 {
				t.Fatalf("refused handshake left a session: %+v", st)
			}
		})
	}
}

func certServer(t *testing.T, ca *testCA, verify func(*x509.Certificate) error) *echoServer {
	t.Helper()
	srvCert, _ := ca.issue(t, "flownexus", true, time.Now().Add(time.Hour))
	cfg := DefaultConfig()
	cfg.Certificate = srvCert
	cfg.ClientCAs = ca.pool
	cfg.VerifyPeer = verify
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	return startServer(t, cfg)
}

func TestCertificateModes(t *testing.T) {
	ca := newTestCA(t, "FlowNexus test CA")
	foreign := newTestCA(t, "someone else")
	revoked, revokedLeaf := ca.issue(t, "dev-revoked", false, time.Now().Add(time.Hour))
	srv := certServer(t, ca, func(c *x509.Certificate) error {
		if c.SerialNumber.Cmp(revokedLeaf.SerialNumber) == 0 {
			return errTest
		}
		return nil
	})
	addr := srv.LocalAddr().String()

	for _, suite := range []pion.CipherSuiteID{pion.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8, pion.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256} {
		t.Run("valid/"+suite.String(), func(t *testing.T) {
			good, _ := ca.issue(t, "urn:imei:350457790000001", false, time.Now().Add(time.Hour))
			c := dial(t, addr, ClientConfig{Certificate: good, RootCAs: ca.pool, ServerName: "localhost", CipherSuites: []pion.CipherSuiteID{suite}})
			if got := roundTrip(t, c, "x"); got != "urn:imei:350457790000001|x" {
				t.Fatalf("echo = %q", got)
			}
			if c.Peer().Identity != "flownexus" {
				t.Fatalf("server identity = %q", c.Peer().Identity)
			}
		})
	}
	t.Run("psk on the same listener", func(t *testing.T) {
		c := dial(t, addr, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
		if got := roundTrip(t, c, "y"); got != "dev-1|y" {
			t.Fatalf("echo = %q", got)
		}
	})

	expired, _ := ca.issue(t, "dev-expired", false, time.Now().Add(-time.Hour))
	alien, _ := foreign.issue(t, "dev-foreign", false, time.Now().Add(time.Hour))
	noCN, _ := ca.issue(t, "", false, time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		cfg  ClientConfig
	}{
		{"expired", ClientConfig{Certificate: expired, RootCAs: ca.pool, ServerName: "localhost"}},
		{"revoked", ClientConfig{Certificate: revoked, RootCAs: ca.pool, ServerName: "localhost"}},
		{"foreign CA", ClientConfig{Certificate: alien, RootCAs: ca.pool, ServerName: "localhost"}},
		{"no CN", ClientConfig{Certificate: noCN, RootCAs: ca.pool, ServerName: "localhost"}},
	} {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			tc.cfg.HandshakeTimeout = 10 * time.Second
			c, err := Dial(context.Background(), addr, tc.cfg)
			if err == nil {
				_ = c.Close()
				t.Fatal("handshake succeeded")
			}
			if ev := srv.next(t, EventFailed); ev.Err == nil {
				t.Fatal("failure without a reason")
			}
		})
	}
	t.Run("client refuses a server from another CA", func(t *testing.T) {
		good, _ := ca.issue(t, "dev-x", false, time.Now().Add(time.Hour))
		_, err := Dial(context.Background(), addr, ClientConfig{Certificate: good, RootCAs: foreign.pool, ServerName: "localhost", HandshakeTimeout: 10 * time.Second})
		if err == nil {
			t.Fatal("client accepted an unknown server")
		}
	})
}

func TestConnectionIDSurvivesRebinding(t *testing.T) {
	srv := pskServer(t)
	c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	if got := roundTrip(t, c, "a"); got != "dev-1|a" {
		t.Fatalf("echo = %q", got)
	}
	before := <-srv.peers
	oldAddr := c.LocalAddr().String()
	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	if c.LocalAddr().String() == oldAddr {
		t.Fatal("rebind kept the port")
	}
	if got := roundTrip(t, c, "b"); got != "dev-1|b" {
		t.Fatalf("echo after rebind = %q", got)
	}
	after := <-srv.peers
	if after.Session != before.Session {
		t.Fatalf("session changed across rebinding: %x -> %x", before.Session, after.Session)
	}
	if int(after.Addr.Port()) != c.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("server sees %s, client is at %s", after.Addr, c.LocalAddr())
	}
	if st := srv.Stats(); st.HandshakesOK != 1 {
		t.Fatalf("rebinding cost a handshake: %+v", st)
	}
}

func TestWithoutConnectionIDRebindingLosesSession(t *testing.T) {
	srv := pskServer(t)
	c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey, NoConnectionID: true})
	if got := roundTrip(t, c, "a"); got != "dev-1|a" {
		t.Fatalf("echo = %q", got)
	}
	if err := c.Rebind(); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteTo([]byte("b"), c.Peer()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := c.ReadFrom(buf); err == nil {
		t.Fatalf("a record from an unknown address without CID was answered: %q", buf[:n])
	}
}

func TestParkAndResume(t *testing.T) {
	srv := pskServer(t)
	c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	if got := roundTrip(t, c, "1"); got != "dev-1|1" {
		t.Fatalf("echo = %q", got)
	}
	p := <-srv.peers
	if n := srv.ParkIdle(0); n != 1 {
		t.Fatalf("parked %d sessions", n)
	}
	if st := srv.Stats(); st.Live != 0 || st.Sessions != 1 {
		t.Fatalf("after park: %+v", st)
	}
	// Device speaks first after the sleep.
	if got := roundTrip(t, c, "2"); got != "dev-1|2" {
		t.Fatalf("echo after resume = %q", got)
	}
	if st := srv.Stats(); st.Resumed != 1 || st.HandshakesOK != 1 {
		t.Fatalf("after resume: %+v", st)
	}
	// Server speaks first to a parked session (a queued request).
	srv.ParkIdle(0)
	if err := srv.WriteTo([]byte("ping"), p); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("server-initiated after park: %q %v", buf[:n], err)
	}
	if got := roundTrip(t, c, "3"); got != "dev-1|3" {
		t.Fatalf("echo = %q", got)
	}
}

func TestSleepingDeviceResumesOnNewPort(t *testing.T) {
	srv := pskServer(t)
	addr := srv.LocalAddr().String()
	cfg := ClientConfig{PSKIdentity: "dev-1", PSK: devKey, HandshakeTimeout: 10 * time.Second}
	c, err := Dial(context.Background(), addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, c, "before"); got != "dev-1|before" {
		t.Fatalf("echo = %q", got)
	}
	first := <-srv.peers
	state, err := c.Suspend()
	if err != nil {
		t.Fatal(err)
	}
	srv.ParkIdle(0)
	// Hold the old source port so that the resumed client cannot be given
	// it again by the OS: the point is a new address for the same session.
	if hold, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(first.Addr)); err == nil {
		defer hold.Close()
	}
	c2, err := ResumeClient(context.Background(), addr, state, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := roundTrip(t, c2, "after"); got != "dev-1|after" {
		t.Fatalf("echo = %q", got)
	}
	second := <-srv.peers
	if second.Session != first.Session || second.Addr == first.Addr {
		t.Fatalf("peers %+v then %+v", first, second)
	}
	if st := srv.Stats(); st.HandshakesOK != 1 {
		t.Fatalf("the sleep cost a handshake: %+v", st)
	}
}

// TestNewHandshakeReplacesSameIdentity: an identity keeps its two newest
// sessions (the LwM2M session and, for example, a firmware download's own
// session); a third handshake ends the oldest.
func TestNewHandshakeReplacesSameIdentity(t *testing.T) {
	srv := pskServer(t)
	addr := srv.LocalAddr().String()
	c1 := dial(t, addr, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	roundTrip(t, c1, "a")
	p1 := <-srv.peers
	c2 := dial(t, addr, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	roundTrip(t, c2, "b")
	p2 := <-srv.peers
	if p1.Session == p2.Session {
		t.Fatal("two handshakes share a session")
	}
	if err := srv.WriteTo([]byte("x"), p1); err != nil {
		t.Fatalf("write to the first of two sessions: %v", err)
	}
	if st := srv.Stats(); st.Sessions != 2 {
		t.Fatalf("stats %+v", st)
	}
	c3 := dial(t, addr, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	roundTrip(t, c3, "c")
	<-srv.peers
	if err := srv.WriteTo([]byte("x"), p1); !errors.Is(err, ErrNoSession) {
		t.Fatalf("write to the replaced oldest session: %v", err)
	}
	if err := srv.WriteTo([]byte("x"), p2); err != nil {
		t.Fatalf("write to the previous session: %v", err)
	}
	if st := srv.Stats(); st.Sessions != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPeerCloseForgetsSession(t *testing.T) {
	srv := pskServer(t)
	c, err := Dial(context.Background(), srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "a")
	p := <-srv.peers
	_ = c.Close()
	if ev := srv.next(t, EventClosed); ev.Peer.Session != p.Session {
		t.Fatalf("closed %+v, want session %x", ev.Peer, p.Session)
	}
	if err := srv.WriteTo([]byte("x"), p); !errors.Is(err, ErrNoSession) {
		t.Fatalf("write after close_notify: %v", err)
	}
}

// mbedTLS 2.x clients put a non-DTLS-1.2 record version on the ClientHello.
func TestOddClientHelloRecordVersion(t *testing.T) {
	srv := pskServer(t)
	for _, v := range []uint16{0xfe00, 0xfeff, 0x0303} {
		c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey, HelloRecordVersion: v})
		if got := roundTrip(t, c, "m"); got != "dev-1|m" {
			t.Fatalf("version %04x: echo = %q", v, got)
		}
	}
}

// The same from a raw socket: a captured pion ClientHello with record
// version 0xfe00 gets a HelloVerifyRequest back (RFC 6347 §4.2.1).
func TestRawClientHelloGetsHelloVerifyRequest(t *testing.T) {
	srv := pskServer(t)
	hello := captureClientHello(t)
	hello[1], hello[2] = 0xfe, 0x00
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if _, err := sock.WriteTo(hello, srv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = sock.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := sock.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer to a 0xfe00 ClientHello: %v", err)
	}
	h, err := parseRecordHeader(buf[:n])
	if err != nil || h.contentType != contentHandshake || buf[h.headerLen] != 3 {
		t.Fatalf("answer is not a HelloVerifyRequest: % x", buf[:n])
	}
}

// captureClientHello returns the first datagram a pion client sends.
func captureClientHello(t *testing.T) []byte {
	t.Helper()
	cap := &captureConn{got: make(chan []byte, 1)}
	cfg := ClientConfig{PSKIdentity: "dev-1", PSK: devKey}
	pcfg, err := cfg.pionConfig(nopLogger())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pion.Client(cap, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = conn.HandshakeContext(ctx) }()
	hello := <-cap.got
	cancel()
	return hello
}

type captureConn struct {
	nopConn
	got chan []byte
}

func (c *captureConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case c.got <- append([]byte(nil), b...):
	default:
	}
	return len(b), nil
}

func (c *captureConn) ReadFrom([]byte) (int, net.Addr, error) {
	select {}
}

func TestGarbageIsIgnored(t *testing.T) {
	srv := pskServer(t)
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	for _, b := range [][]byte{{}, {0x16}, []byte("GET / HTTP/1.0\r\n"), {0x19, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0},
		{0x40, 0x01, 0x12, 0x34}} { // a plain CoAP GET
		_, _ = sock.WriteTo(b, srv.LocalAddr())
	}
	// The server still works.
	c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	if got := roundTrip(t, c, "ok"); got != "dev-1|ok" {
		t.Fatalf("echo = %q", got)
	}
}

// The control for the two tests above: pion on its own drops the 0xfe00
// hello and answers the same hello with the record version fixed.
func TestPionAloneDropsOddHello(t *testing.T) {
	srvSock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srvSock.Close()
	cli, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	cfg := &pion.Config{PSK: pskTable{"dev-1": devKey}.lookupBytes, CipherSuites: []pion.CipherSuiteID{pion.TLS_PSK_WITH_AES_128_CCM_8}, LoggerFactory: pionLogs{nopLogger()}}
	conn, err := pion.Server(srvSock, cli.LocalAddr(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = conn.HandshakeContext(ctx) }()

	hello := captureClientHello(t)
	hello[1], hello[2] = 0xfe, 0x00
	buf := make([]byte, 1500)
	if _, err := cli.WriteTo(hello, srvSock.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = cli.SetReadDeadline(time.Now().Add(time.Second))
	if n, _, err := cli.ReadFrom(buf); err == nil {
		t.Fatalf("pion answered a 0xfe00 hello (% x); the rewrite may be unnecessary now", buf[:n])
	}
	fixClientHelloVersions(hello)
	if _, err := cli.WriteTo(hello, srvSock.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := cli.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer to the fixed hello: %v", err)
	}
	if h, err := parseRecordHeader(buf[:n]); err != nil || buf[h.headerLen] != 3 {
		t.Fatalf("not a HelloVerifyRequest: % x", buf[:n])
	}
}

// A ClientHello never followed up (a spoofed source) does not hold a
// handshake slot for long.
func TestHalfOpenHandshakeReaped(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	cfg.HelloTimeout = 200 * time.Millisecond
	cfg.ParkAfter = 200 * time.Millisecond // janitor period 100 ms
	srv := startServer(t, cfg)
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	if _, err := sock.WriteTo(captureClientHello(t), srv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	ev := srv.next(t, EventFailed)
	if ev.Peer.Addr.Port() != uint16(sock.LocalAddr().(*net.UDPAddr).Port) {
		t.Fatalf("failed %+v", ev)
	}
	if st := srv.Stats(); st.Handshaking != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// A restart with Config.SessionFile keeps the devices' sessions.
func TestSessionsSurviveRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dtls-sessions")
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	cfg.SessionFile = file
	srv1, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv1.LocalAddr().String()
	ctx1, cancel1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- srv1.Run(ctx1) }()
	go echo(srv1)
	c := dial(t, addr, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	if got := roundTrip(t, c, "before"); got != "dev-1|before" {
		t.Fatalf("echo %q", got)
	}
	cancel1()
	if err := <-done1; err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("session file: %v %v", st, err)
	}

	srv2 := startServer(t, func() Config { c := cfg; return c }(), addr)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("session file not deleted after restore: %v", err)
	}
	if st := srv2.Stats(); st.Sessions != 1 || st.Live != 0 {
		t.Fatalf("restored: %+v", st)
	}
	if got := roundTrip(t, c, "after"); got != "dev-1|after" {
		t.Fatalf("echo after restart %q", got)
	}
	if st := srv2.Stats(); st.HandshakesOK != 0 || st.Resumed != 1 {
		t.Fatalf("after restart: %+v", st)
	}
}

func TestCorruptSessionFileIsIgnored(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dtls-sessions")
	if err := os.WriteFile(file, []byte("FNXDTLS1\x00\x01garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	cfg.SessionFile = file
	srv := startServer(t, cfg)
	if st := srv.Stats(); st.Sessions != 0 {
		t.Fatalf("%+v", st)
	}
	var s Server
	if _, err := s.ImportSessions(strings.NewReader("nope")); !errors.Is(err, ErrSessionFile) {
		t.Fatalf("bad header: %v", err)
	}
}

// TestWrongKeyIsLoggedWithIdentity: a handshake that fails because the
// device's PSK is wrong is logged with the identity it offered and a hint,
// so an operator can tell a bad key from an unknown device.
func TestWrongKeyIsLoggedWithIdentity(t *testing.T) {
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	cfg.HandshakeTimeout = 2 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	srv := startServer(t, cfg)
	_, err := Dial(context.Background(), srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: []byte("wrong-key-000000"), HandshakeTimeout: 3 * time.Second})
	if err == nil {
		t.Fatal("a wrong key completed the handshake")
	}
	srv.next(t, EventFailed)
	out := logs.String()
	if !strings.Contains(out, `psk_identity=dev-1`) || !strings.Contains(out, "does not match") {
		t.Fatalf("log of a wrong-key handshake:\n%s", out)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
