package dtls

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodSocket sends forged ClientHellos from one loopback address and port
// (a source that never answers) and counts the bytes both ways.
type floodSocket struct {
	c         *net.UDPConn
	sent, got atomic.Int64
}

// helloFlood sends forged ClientHellos at about a thousand a second from
// 256 loopback sources (127.0.0.10–41) that never answer, until stopped;
// it returns the sockets, for their byte counts, and the peak of
// handshakes in progress.
type helloFlood struct {
	socks  []*floodSocket
	stop   chan struct{}
	wg     sync.WaitGroup
	rounds atomic.Int64
	peak   atomic.Int64
}

func startHelloFlood(t *testing.T, srv *echoServer) *helloFlood {
	t.Helper()
	hello := captureClientHello(t)
	fl := &helloFlood{stop: make(chan struct{})}
	for a := range 32 {
		for range 8 {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(10+a))})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			fl.socks = append(fl.socks, &floodSocket{c: c})
		}
	}
	for _, s := range fl.socks {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, err := s.c.Read(buf)
				if err != nil {
					return
				}
				s.got.Add(int64(n))
			}
		}()
	}
	fl.wg.Go(func() {
		for {
			for i, s := range fl.socks {
				select {
				case <-fl.stop:
					return
				default:
				}
				if n, err := s.c.WriteTo(hello, srv.LocalAddr()); err == nil {
					s.sent.Add(int64(n))
				}
				// About a thousand hellos a second, five times what
				// a limit of 64 holds for a HelloTimeout of 300 ms.
				if i%2 == 1 {
					time.Sleep(time.Millisecond)
				}
			}
			if h := int64(srv.Stats().Handshaking); h > fl.peak.Load() {
				fl.peak.Store(h)
			}
			fl.rounds.Add(1)
		}
	})
	// The flood is on: every source has sent at least twice.
	for fl.rounds.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	return fl
}

// end stops the flood, waits for every forged handshake to end, and
// checks that no source got more bytes than it sent.
func (fl *helloFlood) end(t *testing.T, srv *echoServer) {
	t.Helper()
	close(fl.stop)
	fl.wg.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for srv.Stats().Handshaking != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("handshakes left: %+v", srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	var sent, got int64
	for _, s := range fl.socks {
		if s.got.Load() > s.sent.Load() {
			t.Errorf("%s sent %d bytes and got %d", s.c.LocalAddr(), s.sent.Load(), s.got.Load())
		}
		sent += s.sent.Load()
		got += s.got.Load()
	}
	t.Logf("flood: %d bytes sent, %d received; %+v", sent, got, srv.Stats())
}

// dialAsDevice dials as a device does: a handshake that fails is tried
// again (the stateless cookie of a flood makes the client start over once).
func dialAsDevice(t *testing.T, addr string, cfg ClientConfig) *Client {
	t.Helper()
	cfg.HandshakeTimeout = 10 * time.Second
	var err error
	for range 5 {
		var c *Client
		if c, err = Dial(context.Background(), addr, cfg); err == nil {
			t.Cleanup(func() { _ = c.Close() })
			return c
		}
	}
	t.Fatalf("dial: %v", err)
	return nil
}

// TestSpoofedHelloFlood: ClientHellos from 256 loopback sources that never
// return the cookie (as a flood of spoofed source addresses would) do not
// lock real devices out, although only 64 handshakes may be in progress.
// From 16 handshakes in progress on, hellos from unverified addresses get
// a stateless HelloVerifyRequest and make no state; a real device returns
// the cookie, is verified, starts over and gets its handshake. No source
// gets more bytes than it sent (RFC 6347 §4.2.1: the HelloVerifyRequest is
// smaller than the ClientHello, and nothing else goes to an address that
// did not return the cookie).
func TestSpoofedHelloFlood(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey, "dev-2": []byte("fedcba9876543210")}.lookup
	cfg.MaxHandshakes = 64
	cfg.HelloTimeout = 300 * time.Millisecond
	cfg.ParkAfter = 200 * time.Millisecond
	srv := startServer(t, cfg)
	fl := startHelloFlood(t, srv)
	for i := range 3 {
		c := dialAsDevice(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
		if got := roundTrip(t, c, fmt.Sprint(i)); got != fmt.Sprintf("dev-1|%d", i) {
			t.Fatalf("device %d during the flood: %q", i, got)
		}
		_ = c.Close()
	}
	st := srv.Stats()
	fl.end(t, srv)
	if st.StatelessHellos == 0 || st.HandshakesOK < 3 {
		t.Fatalf("stats %+v", st)
	}
	if p := fl.peak.Load(); p > int64(srv.cfg.HelloCookieAt)+8 {
		t.Fatalf("%d handshakes in progress, stateless from %d", p, srv.cfg.HelloCookieAt)
	}
}

// TestSlowDeviceThroughHelloFlood: a device whose round trip is 500 ms
// (a slow cellular link) gets through the same flood. Answered by pion's
// stateful cookie alone, it cannot: the flood displaces its half-open
// handshake long before its cookie comes back (64 handshakes at a
// thousand hellos a second last 64 ms), which is what this test finds with
// HelloCookieAt set out of reach.
func TestSlowDeviceThroughHelloFlood(t *testing.T) {
	cfg := DefaultConfig()
	cfg.PSK = pskTable{"dev-1": devKey}.lookup
	cfg.MaxHandshakes = 64
	cfg.HelloTimeout = 3 * time.Second
	srv := startServer(t, cfg)
	fl := startHelloFlood(t, srv)
	relay := delayRelay(t, srv.LocalAddr().String(), 250*time.Millisecond)
	c := dialAsDevice(t, relay, ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
	if got := roundTrip(t, c, "slow"); got != "dev-1|slow" {
		t.Fatalf("slow device during the flood: %q", got)
	}
	st := srv.Stats()
	fl.end(t, srv)
	if st.CookiesVerified == 0 || st.HandshakesOK != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// delayRelay forwards datagrams between clients and target, each way after
// d, from one upstream socket per client; it returns its address.
func delayRelay(t *testing.T, target string, d time.Duration) string {
	t.Helper()
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	to, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	up := map[string]*net.UDPConn{}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := ln.ReadFromUDP(buf)
			if err != nil {
				return
			}
			mu.Lock()
			u := up[from.String()]
			if u == nil {
				if u, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, to); err != nil {
					mu.Unlock()
					continue
				}
				t.Cleanup(func() { u.Close() })
				up[from.String()] = u
				go func() {
					b := make([]byte, 4096)
					for {
						n, err := u.Read(b)
						if err != nil {
							return
						}
						p := append([]byte(nil), b[:n]...)
						time.AfterFunc(d, func() { _, _ = ln.WriteToUDP(p, from) })
					}
				}()
			}
			mu.Unlock()
			p := append([]byte(nil), buf[:n]...)
			time.AfterFunc(d, func() { _, _ = u.Write(p) })
		}
	}()
	return ln.LocalAddr().String()
}
