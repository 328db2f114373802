package coap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawPeer is a bare socket talking to an endpoint, for exact messages.
type rawPeer struct {
	t *testing.T
	c *net.UDPConn
}

func dialRaw(t *testing.T, e *Endpoint) *rawPeer {
	c, err := net.DialUDP("udp", nil, e.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawPeer{t: t, c: c}
}

func (r *rawPeer) send(m *Message) {
	r.t.Helper()
	b, err := m.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rawPeer) recv() *Message {
	r.t.Helper()
	buf := make([]byte, 2048)
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := r.c.Read(buf)
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := Unmarshal(buf[:n])
	if err != nil {
		r.t.Fatal(err)
	}
	return m.Clone()
}

func serveOnly(t *testing.T, h Handler, cfg Config, opts ...EndpointOption) *Endpoint {
	st, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := NewEndpoint(st, h, cfg, opts...)
	run(t, e)
	return e
}

func TestPingAndBadOption(t *testing.T) {
	e := serveOnly(t, HandlerFunc(func(ctx context.Context, r *Request) *Response { return NewResponse(Content) }), testConfig())
	p := dialRaw(t, e)
	// CoAP ping: CON Empty → RST (RFC 7252 §4.3).
	p.send(&Message{Type: Confirmable, MessageID: 5})
	if r := p.recv(); r.Type != Reset || r.MessageID != 5 {
		t.Fatalf("ping: %v", r)
	}
	// Unknown critical option → 4.02 (§5.4.1); unknown elective is ignored.
	m := &Message{Type: Confirmable, Code: GET, MessageID: 6, Token: []byte{1}}
	m.AddOption(2049, []byte{1})
	p.send(m)
	if r := p.recv(); r.Code != BadOption || r.MessageID != 6 {
		t.Fatalf("critical: %v", r)
	}
	m = &Message{Type: Confirmable, Code: GET, MessageID: 7, Token: []byte{1}}
	m.AddOption(2048, []byte{1})
	p.send(m)
	if r := p.recv(); r.Code != Content {
		t.Fatalf("elective: %v", r)
	}
	// A malformed CON with a readable header is rejected with RST.
	if _, err := p.c.Write([]byte{0x40, 0x01, 0x00, 0x09, 0xff}); err != nil {
		t.Fatal(err)
	}
	if r := p.recv(); r.Type != Reset || r.MessageID != 9 {
		t.Fatalf("malformed: %v", r)
	}
	// A response nobody asked for is rejected with RST.
	p.send(&Message{Type: Confirmable, Code: Content, MessageID: 10, Token: []byte{9, 9}})
	if r := p.recv(); r.Type != Reset || r.MessageID != 10 {
		t.Fatalf("unexpected response: %v", r)
	}
	// NON request: NON response.
	p.send(&Message{Type: NonConfirmable, Code: GET, MessageID: 11, Token: []byte{2}})
	if r := p.recv(); r.Type != NonConfirmable || r.Code != Content || !bytes.Equal(r.Token, []byte{2}) {
		t.Fatalf("NON: %v", r)
	}
}

func TestBlock1Refusals(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBodySize = 64
	e := serveOnly(t, HandlerFunc(func(ctx context.Context, r *Request) *Response { return NewResponse(Changed) }), cfg)
	p := dialRaw(t, e)
	block := func(mid uint16, num uint32, more bool, payload []byte) *Message {
		m := &Message{Type: Confirmable, Code: PUT, MessageID: mid, Token: []byte{byte(mid)}, Payload: payload}
		m.SetPath("/up")
		m.SetBlock(Block1, Block{Num: num, More: more, SZX: 0})
		return m
	}
	b16 := bytes.Repeat([]byte("x"), 16)
	p.send(block(1, 0, true, b16))
	if r := p.recv(); r.Code != Continue {
		t.Fatalf("first block: %v", r)
	}
	// Block 2 before block 1: 4.08 (RFC 7959 §2.9.2).
	p.send(block(2, 2, true, b16))
	if r := p.recv(); r.Code != RequestEntityIncomplete {
		t.Fatalf("out of order: %v", r)
	}
	// Past MaxBodySize: 4.13 with Size1.
	for i := uint32(0); i < 4; i++ {
		p.send(block(uint16(10+i), i, true, b16))
		if r := p.recv(); r.Code != Continue {
			t.Fatalf("block %d: %v", i, r)
		}
	}
	p.send(block(20, 4, true, b16))
	if r := p.recv(); r.Code != RequestEntityTooLarge || !r.HasOption(Size1) {
		t.Fatalf("too large: %v", r)
	}
	// A Size1 announcing too much is refused at the first block.
	m := block(21, 0, true, b16)
	m.SetUint(Size1, 1000)
	p.send(m)
	if r := p.recv(); r.Code != RequestEntityTooLarge {
		t.Fatalf("size1: %v", r)
	}
	// A non-final block shorter than its size.
	p.send(block(22, 0, true, b16[:5]))
	if r := p.recv(); r.Code != BadRequest {
		t.Fatalf("short block: %v", r)
	}
}

func TestNStart(t *testing.T) {
	var inflight, peak atomic.Int32
	gate := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-gate
		inflight.Add(-1)
		return NewResponse(Content)
	})
	cfg := testConfig()
	cfg.ProcessingDelay = 0 // piggybacked only, so an exchange stays outstanding
	cfg.Workers = 4
	srv, cli, p := pair(t, h, cfg)
	_ = srv
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cli.Do(context.Background(), p, get("/n")); err != nil {
				t.Error(err)
			}
		}()
	}
	for i := 0; i < 3; i++ {
		gate <- struct{}{}
	}
	wg.Wait()
	if peak.Load() != 1 {
		t.Fatalf("%d requests in flight with NSTART 1", peak.Load())
	}
}

func TestResetHandlerForNonNotification(t *testing.T) {
	got := make(chan []byte, 1)
	srv := serveOnly(t, nil, testConfig(), WithResetHandler(func(p Peer, tok []byte) { got <- tok }))
	rp := dialRaw(t, srv)
	peer := Peer{Addr: rp.c.LocalAddr().(*net.UDPAddr).AddrPort()}
	n := NewResponse(Content)
	n.Type = NonConfirmable
	n.SetObserve(3)
	if err := srv.Notify(context.Background(), peer, []byte{7, 7}, n); err != nil {
		t.Fatal(err)
	}
	m := rp.recv()
	if m.Type != NonConfirmable || !bytes.Equal(m.Token, []byte{7, 7}) {
		t.Fatalf("%v", m)
	}
	rp.send(&Message{Type: Reset, MessageID: m.MessageID})
	select {
	case tok := <-got:
		if !bytes.Equal(tok, []byte{7, 7}) {
			t.Fatalf("token %x", tok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reset not reported")
	}
}

func TestBlock2ETagChange(t *testing.T) {
	var calls atomic.Int32
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		// The representation changes after the first block.
		n := calls.Add(1)
		resp := NewResponse(Content)
		resp.Payload = bytes.Repeat([]byte{byte('a' + n)}, 100)
		return resp
	})
	cfg := testConfig()
	cfg.BlockSize = 32
	_, cli, p := pair(t, h, cfg)
	if _, err := cli.Do(context.Background(), p, get("/changing")); !errors.Is(err, ErrBlockTransfer) {
		t.Fatalf("err = %v", err)
	}
}

func TestObserveBlockwiseNotification(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 20) // 200 bytes
	var mu sync.Mutex
	var tok []byte
	var obsPeer Peer
	ready := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		resp := NewResponse(Content)
		if v, ok := r.Message.Observe(); ok && v == 0 {
			mu.Lock()
			tok, obsPeer = r.Message.Token, r.Peer
			mu.Unlock()
			resp.SetObserve(1)
			resp.Then = func() { ready <- struct{}{} }
		}
		resp.Payload = big
		return resp
	})
	cfg := testConfig()
	cfg.BlockSize = 64
	srv, cli, p := pair(t, h, cfg)
	notes := make(chan []byte, 1)
	obs, first, err := cli.Observe(context.Background(), p, get("/big"), func(n *Notification) error {
		notes <- n.Message.Payload
		return nil
	})
	if err != nil || obs == nil || !bytes.Equal(first.Payload, big) {
		t.Fatalf("observe: %v %v", obs, err)
	}
	<-ready
	mu.Lock()
	tk, op := tok, obsPeer
	mu.Unlock()
	n := NewResponse(Content)
	n.SetObserve(2)
	n.Payload = big
	if err := srv.Notify(context.Background(), op, tk, n); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-notes:
		if !bytes.Equal(got, big) {
			t.Fatalf("got %d bytes", len(got))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification")
	}
	// Proactive cancel sends GET with Observe=1.
	if resp, err := obs.Cancel(context.Background()); err != nil || resp.Code != Content {
		t.Fatalf("cancel: %v %v", resp, err)
	}
	if obs.Active() {
		t.Fatal("still active")
	}
}

func TestQueueFull(t *testing.T) {
	block := make(chan struct{})
	entered := make(chan struct{}, 3)
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		entered <- struct{}{}
		<-block
		return NewResponse(Content)
	})
	cfg := testConfig()
	cfg.Workers = 1
	cfg.QueueLength = 1
	cfg.ProcessingDelay = 0
	e := serveOnly(t, h, cfg)
	defer close(block)
	p := dialRaw(t, e)
	// One request runs, one waits in the queue; the third finds it full.
	p.send(&Message{Type: Confirmable, Code: GET, MessageID: 0, Token: []byte{0}})
	<-entered
	for i := 1; i < 3; i++ {
		p.send(&Message{Type: Confirmable, Code: GET, MessageID: uint16(i), Token: []byte{byte(i)}})
	}
	r := p.recv()
	if r.Code != ServiceUnavailable || r.MessageID != 2 {
		t.Fatalf("%v", r)
	}
	if e.Stats().Overloaded != 1 {
		t.Fatalf("%+v", e.Stats())
	}
}

func TestNewer(t *testing.T) {
	t0 := time.Now()
	for _, c := range []struct {
		v1, v2 uint32
		dt     time.Duration
		want   bool
	}{
		{1, 2, 0, true},
		{2, 1, 0, false},
		{5, 5, 0, false},
		{1<<24 - 1, 0, 0, true}, // wrap-around
		{0, 1<<24 - 1, 0, false},
		{10, 3, 129 * time.Second, true}, // older number, but much later
	} {
		if got := newer(c.v1, t0, c.v2, t0.Add(c.dt)); got != c.want {
			t.Errorf("newer(%d, %d, +%v) = %v", c.v1, c.v2, c.dt, got)
		}
	}
}
