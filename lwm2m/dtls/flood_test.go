package dtls

import (
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

// TestSpoofedHelloFlood: ClientHellos from 256 loopback sources that never
// return the cookie (as a flood of spoofed source addresses would) do not
// lock real devices out, although only 64 handshakes may be in progress:
// handshakes still waiting for their cookie make room for new ones
// (counted as Evicted), handshakes past it are never displaced. No source
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
	hello := captureClientHello(t)
	var socks []*floodSocket
	for a := range 32 {
		for range 8 {
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(10+a))})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			socks = append(socks, &floodSocket{c: c})
		}
	}
	var readers sync.WaitGroup
	for _, s := range socks {
		readers.Add(1)
		go func() {
			defer readers.Done()
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
	stop := make(chan struct{})
	var flooder sync.WaitGroup
	var rounds, peak atomic.Int64
	flooder.Add(1)
	go func() {
		defer flooder.Done()
		for {
			for i, s := range socks {
				select {
				case <-stop:
					return
				default:
				}
				if n, err := s.c.WriteTo(hello, srv.LocalAddr()); err == nil {
					s.sent.Add(int64(n))
				}
				// About a thousand hellos a second, five times what
				// the limit can hold for HelloTimeout (213/s). A real
				// client gets through while it answers the
				// HelloVerifyRequest within MaxHandshakes/rate (64 ms
				// here; longer with a larger limit), also under -race.
				if i%2 == 1 {
					time.Sleep(time.Millisecond)
				}
			}
			if h := int64(srv.Stats().Handshaking); h > peak.Load() {
				peak.Store(h)
			}
			rounds.Add(1)
		}
	}()
	// The flood is on: every source has sent at least twice.
	for rounds.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	for i := range 3 {
		c := dial(t, srv.LocalAddr().String(), ClientConfig{PSKIdentity: "dev-1", PSK: devKey})
		if got := roundTrip(t, c, fmt.Sprint(i)); got != fmt.Sprintf("dev-1|%d", i) {
			t.Fatalf("device %d during the flood: %q", i, got)
		}
		_ = c.Close()
	}
	close(stop)
	flooder.Wait()
	st := srv.Stats()
	if st.Evicted == 0 || st.HandshakesOK < 3 {
		t.Fatalf("stats %+v", st)
	}
	if peak.Load() > 2*int64(cfg.MaxHandshakes) {
		t.Fatalf("%d handshakes in progress, limit %d", peak.Load(), cfg.MaxHandshakes)
	}
	// Every forged handshake ends (reaped after HelloTimeout); then count.
	deadline := time.Now().Add(20 * time.Second)
	for srv.Stats().Handshaking != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("handshakes left: %+v", srv.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	var sent, got int64
	for _, s := range socks {
		if s.got.Load() > s.sent.Load() {
			t.Errorf("%s sent %d bytes and got %d", s.c.LocalAddr(), s.sent.Load(), s.got.Load())
		}
		sent += s.sent.Load()
		got += s.got.Load()
	}
	t.Logf("flood: %d bytes sent, %d received; %+v", sent, got, st)
}
