package dtls

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

// withCookie returns the ClientHello datagram ch with its cookie replaced
// (record, handshake and fragment lengths adjusted).
func withCookie(t *testing.T, ch, cookie []byte) []byte {
	t.Helper()
	f, ok := parseHello(ch)
	if !ok {
		t.Fatal("not a ClientHello")
	}
	at := recordHeaderLen + handshakeHdrLen + len(f.params) // cookie length byte
	out := append([]byte(nil), ch[:at]...)
	out = append(out, byte(len(cookie)))
	out = append(out, cookie...)
	out = append(out, ch[at+1+len(f.cookie):]...)
	n := len(out) - recordHeaderLen - handshakeHdrLen
	binary.BigEndian.PutUint16(out[11:13], uint16(len(out)-recordHeaderLen))
	for _, off := range []int{recordHeaderLen + 1, recordHeaderLen + 9} {
		out[off], out[off+1], out[off+2] = byte(n>>16), byte(n>>8), byte(n)
	}
	return out
}

// TestStatelessHelloRefusals: with every hello answered statelessly
// (HelloCookieAt < 0), a hello gets a HelloVerifyRequest smaller than
// itself that echoes its record sequence number and makes no handshake;
// only its own cookie, from the same address and port, is accepted (and
// answered with the restart alert); a tampered cookie, one from another
// port and a fragmented hello are not; after the cookie a hello from the
// verified address starts a handshake.
func TestStatelessHelloRefusals(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	cfg.HelloCookieAt = -1
	srv := startServer(t, cfg)
	ch := captureClientHello(t)
	dev := func() *net.UDPConn {
		c, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ask := func(c *net.UDPConn, b []byte) []byte {
		t.Helper()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return buf[:n]
	}
	hvrCookie := func(b []byte) []byte {
		t.Helper()
		if len(b) < recordHeaderLen+handshakeHdrLen+3 || b[0] != contentHandshake || b[recordHeaderLen] != handshakeHVR {
			t.Fatalf("not a HelloVerifyRequest: %x", b)
		}
		return b[recordHeaderLen+handshakeHdrLen+3:]
	}

	a := dev()
	hvr := ask(a, ch)
	cookie := hvrCookie(hvr)
	if len(hvr) > len(ch) || len(cookie) != cookieLen || !bytes.Equal(hvr[5:11], ch[5:11]) {
		t.Fatalf("HelloVerifyRequest of %d bytes for a %d-byte hello: %x", len(hvr), len(ch), hvr)
	}
	if st := srv.Stats(); st.Handshaking != 0 || st.StatelessHellos != 1 {
		t.Fatalf("a stateless hello made state: %+v", st)
	}
	bad := bytes.Clone(cookie)
	bad[0] ^= 1
	if got := ask(a, withCookie(t, ch, bad)); !bytes.Equal(hvrCookie(got), cookie) {
		t.Fatal("a tampered cookie was not answered with the right one")
	}
	b := dev() // the same IP, another port: the cookie is not its own
	if got := ask(b, withCookie(t, ch, cookie)); got[0] != contentHandshake {
		t.Fatalf("a cookie from another port was accepted: %x", got)
	}
	// A fragmented hello (fragment_length short of length) is dropped.
	frag := withCookie(t, ch, nil)
	frag[recordHeaderLen+11]--
	if _, err := a.Write(frag); err != nil {
		t.Fatal(err)
	}
	if got := ask(a, withCookie(t, ch, cookie)); !bytes.Equal(got, restartAlert([6]byte(ch[5:11]))) {
		t.Fatalf("its own cookie: %x, want the restart alert", got)
	}
	if st := srv.Stats(); st.CookiesVerified != 1 || st.StatelessHellos != 3 || st.Handshaking != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Verified: the next hello, from any port of that address, goes to a
	// handshake (pion's own HelloVerifyRequest).
	c := dev()
	if got := ask(c, ch); got[0] != contentHandshake || bytes.Equal(hvrCookie(got), cookie) {
		t.Fatalf("a verified address got %x", got)
	}
	if st := srv.Stats(); st.Handshaking != 1 || st.StatelessHellos != 3 {
		t.Fatalf("after verification: %+v", st)
	}
}

// TestCookieSecretRotates: a cookie stays valid for one rotation of the
// secret, not two.
func TestCookieSecretRotates(t *testing.T) {
	var j cookieJar
	from := netip.MustParseAddrPort("127.0.0.1:5000")
	f := helloFields{params: []byte("hello")}
	t0 := time.Unix(1_000_000, 0)
	f.cookie = j.cookie(from, f.params, t0)
	if !j.check(from, f, t0.Add(cookieRotate+time.Second)) {
		t.Fatal("cookie refused after one rotation")
	}
	if j.check(from, f, t0.Add(3*cookieRotate)) {
		t.Fatal("cookie accepted after two rotations")
	}
	if !j.isVerified(from.Addr(), t0.Add(cookieRotate+2*time.Second)) || j.isVerified(from.Addr(), t0.Add(cookieRotate+verifiedFor+2*time.Second)) {
		t.Fatal("verification not kept for verifiedFor")
	}
}

// FuzzParseHello: the ClientHello reader never panics, and what it
// returns lies within the datagram.
func FuzzParseHello(f *testing.F) {
	f.Add(handshakeRecord([6]byte{}, handshakeClientHello, append(make([]byte, 34), 0, 0)))
	f.Add([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseHello(b)
		if !ok {
			return
		}
		if len(h.params) < 35 || len(h.params)+len(h.cookie) > len(b) || len(h.cookie) > 255 {
			t.Fatalf("fields out of bounds: %d + %d of %d", len(h.params), len(h.cookie), len(b))
		}
	})
}
