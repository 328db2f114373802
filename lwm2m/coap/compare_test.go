package coap

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gcmessage "github.com/plgd-dev/go-coap/v3/message"
	gccodes "github.com/plgd-dev/go-coap/v3/message/codes"
	gcmux "github.com/plgd-dev/go-coap/v3/mux"
	gcnet "github.com/plgd-dev/go-coap/v3/net"
	gcoptions "github.com/plgd-dev/go-coap/v3/options"
	gcudp "github.com/plgd-dev/go-coap/v3/udp"
)

// The issue measured go-coap's UDP server under a closed loop from 64 peers
// (server cost per request rising from 55 µs to 474 µs in 40 s, from the
// response-cache scan on every packet) and at about 15 KB plus a goroutine
// per peer. These benchmarks run the same workload against this package's
// Endpoint and against go-coap's server, side by side.

// startServer starts a server answering POST with 2.04 and returns its
// address and a stop function.
type serverKind func(tb testing.TB) (addr string, stop func())

func ourServer(tb testing.TB) (string, func()) {
	cfg := DefaultConfig()
	cfg.PeerRate = 0
	t, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	e := NewEndpoint(t, HandlerFunc(func(ctx context.Context, r *Request) *Response { return NewResponse(Changed) }), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	return t.LocalAddr().String(), func() { cancel(); <-done }
}

func goCoapServer(tb testing.TB) (string, func()) {
	r := gcmux.NewRouter()
	_ = r.Handle("/x", gcmux.HandlerFunc(func(w gcmux.ResponseWriter, _ *gcmux.Message) {
		_ = w.SetResponse(gccodes.Changed, gcmessage.TextPlain, nil)
	}))
	l, err := gcnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := gcudp.NewServer(gcoptions.WithMux(r))
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(l) }()
	return l.LocalAddr().String(), func() { s.Stop(); <-done; _ = l.Close() }
}

// closedLoopPeer sends CON POST /x and waits for the ACK, again and again.
type closedLoopPeer struct {
	c   *net.UDPConn
	mid uint16
	buf []byte
	req Message
}

func newPeer(tb testing.TB, addr string, i int) *closedLoopPeer {
	ua, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%4))}, ua)
	if err != nil {
		tb.Fatal(err)
	}
	p := &closedLoopPeer{c: c, buf: make([]byte, 1500), mid: uint16(i * 1000)}
	p.req = Message{Type: Confirmable, Code: POST, Token: []byte{byte(i), byte(i >> 8), 1, 2}}
	p.req.SetPath("/x")
	return p
}

func (p *closedLoopPeer) roundTrip() error {
	p.mid++
	p.req.MessageID = p.mid
	b, _ := p.req.Marshal()
	if _, err := p.c.Write(b); err != nil {
		return err
	}
	for {
		_ = p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := p.c.Read(p.buf)
		if err != nil {
			return err
		}
		if n >= 4 && uint16(p.buf[2])<<8|uint16(p.buf[3]) == p.mid {
			return nil
		}
	}
}

var servers = []struct {
	name  string
	start serverKind
}{{"flownexus", ourServer}, {"go-coap", goCoapServer}}

// BenchmarkClosedLoop64: 64 peers in closed loops; ns/op is wall time per
// request over all peers. Run it with -benchtime=40s to see go-coap's cost
// grow with its response cache; the first and last thirds are reported.
func BenchmarkClosedLoop64(b *testing.B) {
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			addr, stop := srv.start(b)
			defer stop()
			peers := make([]*closedLoopPeer, 64)
			for i := range peers {
				peers[i] = newPeer(b, addr, i)
				defer peers[i].c.Close()
			}
			var next atomic.Int64
			var firstThird, lastThird atomic.Int64 // nanoseconds of requests
			n := int64(b.N)
			b.ResetTimer()
			var wg sync.WaitGroup
			for _, p := range peers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > n {
							return
						}
						t0 := time.Now()
						if err := p.roundTrip(); err != nil {
							b.Error(err)
							return
						}
						d := time.Since(t0).Nanoseconds()
						switch {
						case i <= n/3:
							firstThird.Add(d)
						case i > n-n/3:
							lastThird.Add(d)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if third := n / 3; third > 0 {
				b.ReportMetric(float64(firstThird.Load())/float64(third)/1e3, "µs-latency-first-third")
				b.ReportMetric(float64(lastThird.Load())/float64(third)/1e3, "µs-latency-last-third")
			}
		})
	}
}

// BenchmarkPeerCost: 2,000 peers send one request each; reported are the
// heap and goroutines the server keeps per peer afterwards.
func BenchmarkPeerCost(b *testing.B) {
	const peers = 2000
	if b.N > 1 {
		b.Skip("measured once (run with -benchtime=1x)")
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			addr, stop := srv.start(b)
			defer stop()
			ps := make([]*closedLoopPeer, peers)
			for i := range ps {
				ps[i] = newPeer(b, addr, i)
				defer ps[i].c.Close()
			}
			g0, h0 := runtime.NumGoroutine(), heapInUse()
			for _, p := range ps {
				if err := p.roundTrip(); err != nil {
					b.Fatal(err)
				}
			}
			g1, h1 := runtime.NumGoroutine(), heapInUse()
			runtime.KeepAlive(ps) // the peers' buffers must not count as freed
			b.ReportMetric(float64(h1-h0)/peers, "bytes/peer")
			b.ReportMetric(float64(g1-g0)/peers, "goroutines/peer")
		})
	}
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	// Live heap plus goroutine stacks: a goroutine per peer costs stack.
	return int64(m.HeapAlloc + m.StackInuse)
}

var _ = fmt.Sprint
