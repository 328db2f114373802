package appliance

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// impairment is what faultProxy does to each datagram, in netem's terms.
type impairment struct {
	loss, duplicate, reorder float64       // probabilities, 0..1
	delay                    time.Duration // added to every datagram not reordered
}

// faultProxy is a UDP relay on loopback between simulated devices and the
// appliance that loses, duplicates, reorders and delays datagrams in both
// directions: the network faults of issue 13 §3 where the kernel has no
// netem (sch_netem). Each device address gets its own upstream socket, so
// the appliance sees one stable peer per device, as behind a NAT.
type faultProxy struct {
	t        *testing.T
	ln       *net.UDPConn
	upstream *net.UDPAddr
	imp      atomic.Pointer[impairment]

	mu      sync.Mutex
	rng     *rand.Rand
	clients map[string]*net.UDPConn
	closed  bool
	wg      sync.WaitGroup

	dropped, duplicated, reordered, relayed atomic.Uint64
}

func newFaultProxy(t *testing.T, upstream string, imp impairment, seed uint64) *faultProxy {
	t.Helper()
	up, err := net.ResolveUDPAddr("udp", upstream)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{t: t, ln: ln, upstream: up, rng: rand.New(rand.NewPCG(seed, seed^0xfa017)), clients: map[string]*net.UDPConn{}}
	p.imp.Store(&imp)
	p.wg.Add(1)
	go p.fromDevices()
	t.Cleanup(p.close)
	return p
}

func (p *faultProxy) Addr() string { return p.ln.LocalAddr().String() }

func (p *faultProxy) set(imp impairment) { p.imp.Store(&imp) }

func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	p.ln.Close()
	for _, c := range p.clients {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// fromDevices relays what devices send to the appliance.
func (p *faultProxy) fromDevices() {
	defer p.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		c := p.client(from)
		if c == nil {
			return
		}
		p.impair(append([]byte(nil), buf[:n]...), func(b []byte) { c.Write(b) })
	}
}

// client returns the upstream socket of a device, making it (and its
// relay back) on first use; nil once closed.
func (p *faultProxy) client(from *net.UDPAddr) *net.UDPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	if c := p.clients[from.String()]; c != nil {
		return c
	}
	c, err := net.DialUDP("udp", nil, p.upstream)
	if err != nil {
		p.t.Errorf("fault proxy: %v", err)
		return nil
	}
	p.clients[from.String()] = c
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP port unreachable while a device restarts
			}
			p.impair(append([]byte(nil), buf[:n]...), func(b []byte) { p.ln.WriteToUDP(b, from) })
		}
	}()
	return c
}

// impair applies the impairment to one datagram and hands the copies that
// survive to write, now or after the delay.
func (p *faultProxy) impair(b []byte, write func([]byte)) {
	imp := p.imp.Load()
	p.mu.Lock()
	lost := p.rng.Float64() < imp.loss
	dup := p.rng.Float64() < imp.duplicate
	early := p.rng.Float64() < imp.reorder
	p.mu.Unlock()
	if lost {
		p.dropped.Add(1)
		return
	}
	copies := 1
	if dup {
		copies = 2
		p.duplicated.Add(1)
	}
	delay := imp.delay
	if early && delay > 0 {
		// netem's reorder: this one goes at once, ahead of the delayed.
		delay = 0
		p.reordered.Add(1)
	}
	for i := 0; i < copies; i++ {
		p.relayed.Add(1)
		if delay == 0 {
			write(b)
			continue
		}
		time.AfterFunc(delay, func() {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if !closed {
				write(b)
			}
		})
	}
}
