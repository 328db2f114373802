package appliance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// The raw load generator: one UDP socket per simulated device, messages
// built with lwm2m/coap's codec, no CoAP stack of its own. A reader
// goroutine per socket matches replies by message ID (RFC 7252 §4.4) and
// answers what the server asks the device (Read, Observe) at once, so that
// the server's own requests never wait on the load side.

var errLost = errors.New("no reply")

// call is one request waiting for its reply.
type call struct {
	mid    uint16
	token  string
	sent   time.Time
	notify bool // a notification: an empty ACK completes it
	cb     func(m *coap.Message, lat time.Duration)
}

// lgPeer is one simulated device: its own socket and source address.
type lgPeer struct {
	conn   *net.UDPConn
	srv    *net.UDPAddr
	ep     string
	links  string
	loc    []string
	mid    atomic.Uint32
	tok    atomic.Uint64
	obsSeq atomic.Uint32

	mu       sync.Mutex
	byMID    map[uint16]*call
	byToken  map[string]*call
	obsToken []byte
	observed chan struct{}
	// silent peers never answer the server's requests: devices that went
	// away, whose queued Reads and Observes the server has to give up.
	silent bool
	// requests counts the confirmable requests received from the server
	// (retransmissions included).
	requests atomic.Int64
}

// peerBlocks counts the calls of newPeers: each call's sockets get a
// loopback block of their own (see phaseSources).
var peerBlocks atomic.Int32

// phaseSources moves the source addresses 127.0.0.x to a /24 of their own
// for the k-th set of peers (k = 0 keeps them). The appliance keeps the
// message IDs it answered per address and port for EXCHANGE_LIFETIME (RFC
// 7252 §4.5), and a closed-loop peer cycles through all 65,536 of them
// in seconds: a socket of a later phase that got the port of an earlier
// phase's peer would have its Register answered from that cache, with the
// earlier peer's 2.04 to an Update (seen in the fleet phase, 1 or 2 of
// 10,000 devices, even with random first IDs).
func phaseSources(sources []string, k int) []string {
	out := make([]string, len(sources))
	for i, s := range sources {
		ip := net.ParseIP(s).To4()
		out[i] = fmt.Sprintf("127.%d.%d.%d", (k>>8)&0xff, k&0xff, ip[3])
	}
	return out
}

// newPeers opens n sockets spread over the loopback source addresses,
// moved to a block no earlier call used.
func newPeers(n int, srv string, sources []string, prefix, links string) ([]*lgPeer, error) {
	ua, err := net.ResolveUDPAddr("udp", srv)
	if err != nil {
		return nil, err
	}
	sources = phaseSources(sources, int(peerBlocks.Add(1)-1))
	out := make([]*lgPeer, 0, n)
	for i := range n {
		src := sources[i%len(sources)]
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)})
		if err != nil {
			closePeers(out)
			return nil, fmt.Errorf("socket %d on %s: %w", i, src, err)
		}
		_ = c.SetReadBuffer(1 << 20)
		p := &lgPeer{conn: c, srv: ua, ep: fmt.Sprintf("%s%05d", prefix, i), links: links,
			byMID: map[uint16]*call{}, byToken: map[string]*call{}, observed: make(chan struct{})}
		// A random first message ID and token, as RFC 7252 §4.4 asks of a
		// device.
		p.mid.Store(rand.Uint32())
		p.tok.Store(rand.Uint64())
		p.loc = []string{"rd", "x"} // replaced by the Location-Path of 2.01
		go p.read()
		out = append(out, p)
	}
	return out, nil
}

func closePeers(ps []*lgPeer) {
	for _, p := range ps {
		_ = p.conn.Close()
	}
}

// read handles every datagram of this socket until it is closed.
func (p *lgPeer) read() {
	buf := make([]byte, 2048)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		m, err := coap.Unmarshal(buf[:n])
		if err != nil {
			continue
		}
		if c := p.match(m); c != nil {
			if m.Type == coap.Confirmable && m.Code.IsResponse() {
				p.write(&coap.Message{Type: coap.Acknowledgement, MessageID: m.MessageID})
			}
			c.cb(m.Clone(), now.Sub(c.sent))
			continue
		}
		if m.Type == coap.Confirmable && m.Code.IsRequest() {
			p.requests.Add(1)
			if !p.silent {
				p.answer(m)
			}
		}
	}
}

// match finds the call m answers: an ACK or RST by message ID, a separate
// response or an echo by token.
func (p *lgPeer) match(m *coap.Message) *call {
	p.mu.Lock()
	defer p.mu.Unlock()
	var c *call
	switch {
	case m.Type == coap.Acknowledgement || m.Type == coap.Reset:
		c = p.byMID[m.MessageID]
		if c != nil && m.Code == coap.Empty && m.Type == coap.Acknowledgement && !c.notify {
			return nil // separate response follows (RFC 7252 §5.2.2)
		}
	case len(m.Token) > 0:
		c = p.byToken[string(m.Token)]
	}
	if c == nil {
		return nil
	}
	delete(p.byMID, c.mid)
	delete(p.byToken, c.token)
	return c
}

// answer replies to the server's request as a device would: Observe and
// Read of a resource get a value, anything else 2.04.
func (p *lgPeer) answer(m *coap.Message) {
	r := &coap.Message{Type: coap.Acknowledgement, MessageID: m.MessageID, Token: append([]byte(nil), m.Token...)}
	observed := false
	switch {
	case m.Code == coap.GET:
		r.Code = coap.Content
		if v, ok := m.Observe(); ok && v == 0 {
			r.SetObserve(p.obsSeq.Add(1))
			observed = true
		}
		r.SetContentFormat(0)
		r.Payload = []byte("21.5")
	case m.Code == coap.FETCH:
		r.Code = coap.Content
		r.SetContentFormat(110)
		r.Payload = []byte(`[{"bn":"/3303/0/","n":"5700","v":21.5}]`)
	default:
		r.Code = coap.Changed
	}
	p.write(r)
	if observed {
		// Only now may notifications use the token: one sent before the
		// response could reach the server ahead of it and be taken for
		// it (RFC 7641 §3.2).
		p.mu.Lock()
		first := p.obsToken == nil
		p.obsToken = r.Token
		p.mu.Unlock()
		if first {
			close(p.observed)
		}
	}
}

func (p *lgPeer) write(m *coap.Message) {
	b, err := m.Marshal()
	if err == nil {
		_, _ = p.conn.WriteToUDP(b, p.srv)
	}
}

// start sends m (type, code and options set by the caller) with a fresh
// message ID and token; cb runs on the reply, from the reader goroutine.
func (p *lgPeer) start(m *coap.Message, notify bool, cb func(*coap.Message, time.Duration)) *call {
	m.MessageID = uint16(p.mid.Add(1))
	if !notify {
		m.Token = binary.BigEndian.AppendUint64(nil, p.tok.Add(1))
	}
	c := &call{mid: m.MessageID, token: string(m.Token), notify: notify, cb: cb}
	p.mu.Lock()
	p.byMID[c.mid] = c
	if !notify {
		p.byToken[c.token] = c
	}
	c.sent = time.Now()
	p.mu.Unlock()
	p.write(m)
	return c
}

// forget drops a call that got no reply.
func (p *lgPeer) forget(c *call) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byMID[c.mid] != c {
		return false
	}
	delete(p.byMID, c.mid)
	if !c.notify {
		delete(p.byToken, c.token)
	}
	return true
}

// do sends m and waits for its reply, at most timeout.
func (p *lgPeer) do(m *coap.Message, notify bool, timeout time.Duration) (*coap.Message, time.Duration, error) {
	type res struct {
		m   *coap.Message
		lat time.Duration
	}
	ch := make(chan res, 1)
	c := p.start(m, notify, func(m *coap.Message, lat time.Duration) { ch <- res{m, lat} })
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.m, r.lat, nil
	case <-t.C:
		if p.forget(c) {
			return nil, timeout, errLost
		}
		r := <-ch
		return r.m, r.lat, nil
	}
}

// The requests of a device (OMA-TS-LightweightM2M-Transport 1.1 §6).

func (p *lgPeer) registerMsg(lifetime int) *coap.Message {
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST}
	m.SetPath("/rd")
	m.AddQuery("ep=" + p.ep)
	m.AddQuery("lt=" + strconv.Itoa(lifetime))
	m.AddQuery("lwm2m=1.1")
	m.AddQuery("b=U")
	m.SetContentFormat(40)
	m.Payload = []byte(p.links)
	return m
}

func (p *lgPeer) updateMsg() *coap.Message {
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST}
	for _, s := range p.loc {
		m.AddOption(coap.URIPath, []byte(s))
	}
	return m
}

func (p *lgPeer) sendMsg(v float64) *coap.Message {
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST}
	m.SetPath("/dp")
	m.SetContentFormat(110)
	m.Payload = fmt.Appendf(nil, `[{"bn":"/3303/0/","n":"5700","v":%.2f}]`, v)
	return m
}

// notifyMsg is a confirmable notification of the observed 3303/0/5700
// (RFC 7641 §4.2), or nil when the server has not observed it yet.
func (p *lgPeer) notifyMsg(v float64) *coap.Message {
	p.mu.Lock()
	tok := p.obsToken
	p.mu.Unlock()
	if tok == nil {
		return nil
	}
	m := &coap.Message{Type: coap.Confirmable, Code: coap.Content, Token: tok}
	m.SetObserve(p.obsSeq.Add(1))
	m.SetContentFormat(0)
	m.Payload = strconv.AppendFloat(nil, v, 'f', 2, 64)
	return m
}

// register sends Register and keeps the Location-Path of its 2.01.
func (p *lgPeer) register(lifetime int, timeout time.Duration) error {
	r, _, err := p.do(p.registerMsg(lifetime), false, timeout)
	if err != nil {
		return err
	}
	if r.Code != coap.Created {
		return fmt.Errorf("register %s: %v %s", p.ep, r.Code, r.Payload)
	}
	if loc := r.LocationPath(); len(loc) > 0 {
		p.loc = loc
	}
	return nil
}

// latencies collects reply latencies with the time they completed.
type latencies struct {
	mu  sync.Mutex
	t0  time.Time
	at  []time.Duration // completion, since t0
	lat []time.Duration
}

func newLatencies() *latencies { return &latencies{t0: time.Now()} }

func (l *latencies) add(lat time.Duration) {
	now := time.Since(l.t0)
	l.mu.Lock()
	l.at = append(l.at, now)
	l.lat = append(l.lat, lat)
	l.mu.Unlock()
}

// quantiles returns p50 and p99 of the latencies completed in [from, to).
func (l *latencies) quantiles(from, to time.Duration) (p50, p99 time.Duration, n int) {
	l.mu.Lock()
	var xs []time.Duration
	for i, a := range l.at {
		if a >= from && a < to {
			xs = append(xs, l.lat[i])
		}
	}
	l.mu.Unlock()
	return quantile(xs, 0.50), quantile(xs, 0.99), len(xs)
}

func quantile(xs []time.Duration, q float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(q * float64(len(s)))
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}
