package coap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

func testConfig() Config {
	c := DefaultConfig()
	c.ACKTimeout = 50 * time.Millisecond
	c.MaxRetransmit = 3
	// Piggybacked responses only: on a loaded machine a handler may well
	// take longer than any short delay, and tests that read raw responses
	// expect them piggybacked. The separate path has a test of its own.
	c.ProcessingDelay = 0
	c.RequestTimeout = 5 * time.Second
	return c
}

// pair starts a server endpoint with h and a client endpoint dialled to it.
func pair(t testing.TB, h Handler, cfg Config, opts ...EndpointOption) (srv, cli *Endpoint, srvPeer Peer) {
	t.Helper()
	st, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ct, p, err := DialUDP("127.0.0.1:0", st.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv = NewEndpoint(st, h, cfg, opts...)
	cli = NewEndpoint(ct, nil, cfg, opts...)
	run(t, srv)
	run(t, cli)
	return srv, cli, p
}

func run(t testing.TB, e *Endpoint) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func get(path string) *Message {
	m := &Message{Code: GET}
	m.SetPath(path)
	return m
}

func TestDoPiggybackedAndSeparate(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		if r.Message.Path() == "/slow" {
			<-release
		}
		resp := NewResponse(Content)
		resp.Payload = []byte("hello " + r.Message.Path())
		return resp
	})
	ctx := context.Background()
	// Without a processing delay every response is piggybacked, however
	// slowly the handler gets scheduled.
	_, cli, p := pair(t, h, testConfig())
	resp, err := cli.Do(ctx, p, get("/a/b"))
	if err != nil || resp.Code != Content || string(resp.Payload) != "hello /a/b" || resp.Type != Acknowledgement {
		t.Fatalf("piggybacked: %v %v", resp, err)
	}
	cfg := testConfig()
	cfg.ProcessingDelay = 30 * time.Millisecond
	srv, cli, p := pair(t, h, cfg)
	base := srv.Stats().Sent
	go func() {
		// The server's first datagram is the empty ACK it sends once
		// the processing delay has expired (RFC 7252 §5.2.2; a duplicate
		// before it gets no answer). Only then is the handler let go, so
		// the response must go separately.
		for srv.Stats().Sent < base+1 {
			time.Sleep(time.Millisecond)
		}
		close(release)
	}()
	resp, err = cli.Do(ctx, p, get("/slow"))
	if err != nil || resp.Code != Content || resp.Type != Confirmable {
		t.Fatalf("separate: %v %v", resp, err)
	}
	if s := srv.Stats(); s.Requests != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestTimeoutAndRetransmission(t *testing.T) {
	// A socket that never answers.
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ct, p, err := DialUDP("127.0.0.1:0", sink.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	cli := NewEndpoint(ct, nil, testConfig())
	run(t, cli)
	_, err = cli.Do(context.Background(), p, get("/x"))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if s := cli.Stats(); s.Retransmissions != 3 || s.Timeouts != 1 {
		t.Fatalf("stats %+v", s)
	}
	// Context deadline before the retransmissions end.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := cli.Do(ctx, p, get("/x")); !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestBlockwiseBothWays(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 300) // 4800 bytes
	var mu sync.Mutex
	var got []byte
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		switch r.Message.Code {
		case PUT:
			mu.Lock()
			got = append([]byte(nil), r.Message.Payload...)
			mu.Unlock()
			return NewResponse(Changed)
		}
		resp := NewResponse(Content)
		resp.Payload = big
		return resp
	})
	cfg := testConfig()
	cfg.BlockSize = 256
	_, cli, p := pair(t, h, cfg)
	resp, err := cli.Do(context.Background(), p, get("/big"))
	if err != nil || !bytes.Equal(resp.Payload, big) {
		t.Fatalf("block2: %v, %d bytes", err, len(resp.Payload))
	}
	put := &Message{Code: PUT, Payload: big}
	put.SetPath("/up")
	resp, err = cli.Do(context.Background(), p, put)
	mu.Lock()
	defer mu.Unlock()
	if err != nil || resp.Code != Changed || !bytes.Equal(got, big) {
		t.Fatalf("block1: %v %v, %d bytes", resp, err, len(got))
	}
}

func TestObserveNotifyCancel(t *testing.T) {
	var mu sync.Mutex
	var observer Peer
	var token []byte
	registered := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		resp := NewResponse(Content)
		if v, ok := r.Message.Observe(); ok && v == 0 {
			mu.Lock()
			observer, token = r.Peer, append([]byte(nil), r.Message.Token...)
			mu.Unlock()
			resp.SetObserve(1)
			resp.Then = func() { registered <- struct{}{} }
		}
		resp.Payload = []byte("v0")
		return resp
	})
	srv, cli, p := pair(t, h, testConfig())
	notes := make(chan string, 10)
	obs, first, err := cli.Observe(context.Background(), p, get("/3303/0/5700"), func(n *Notification) error {
		notes <- string(n.Message.Payload)
		return nil
	})
	if err != nil || obs == nil || string(first.Payload) != "v0" {
		t.Fatalf("observe: %v %v %v", obs, first, err)
	}
	<-registered
	mu.Lock()
	op, tok := observer, token
	mu.Unlock()
	for i, typ := range []Type{Confirmable, NonConfirmable} {
		n := NewResponse(Content)
		n.Type = typ
		n.SetObserve(uint32(2 + i))
		n.Payload = []byte{'v', byte('1' + i)}
		if err := srv.Notify(context.Background(), op, tok, n); err != nil {
			t.Fatal(err)
		}
		if got := <-notes; got != string(n.Payload) {
			t.Fatalf("got %q", got)
		}
	}
	// A stale sequence number (RFC 7641 §3.4) is delivered too, and
	// counted (see TestStaleNotificationDeliveredAndAckedAfterHandler).
	n := NewResponse(Content)
	n.SetObserve(1)
	n.Payload = []byte("stale")
	if err := srv.Notify(context.Background(), op, tok, n); err != nil {
		t.Fatal(err)
	}
	if got := <-notes; got != "stale" {
		t.Fatalf("got %q", got)
	}
	if s := cli.Stats(); s.StaleNotifications != 1 {
		t.Fatalf("stale not counted: %+v", s)
	}
	// Reactive cancel: the next CON notification gets RST.
	obs.Forget()
	n.SetObserve(10)
	if err := srv.Notify(context.Background(), op, tok, n); !errors.Is(err, ErrReset) {
		t.Fatalf("after Forget: %v", err)
	}
	select {
	case x := <-notes:
		t.Fatalf("delivered after cancel: %q", x)
	default:
	}
}

func TestDeduplication(t *testing.T) {
	calls := 0
	var mu sync.Mutex
	h := HandlerFunc(func(ctx context.Context, r *Request) *Response {
		mu.Lock()
		calls++
		mu.Unlock()
		return NewResponse(Changed)
	})
	srv, _, _ := pair(t, h, testConfig())
	c, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &Message{Type: Confirmable, Code: POST, MessageID: 77, Token: []byte{1, 2}}
	m.SetPath("/x")
	b, _ := m.Marshal()
	buf := make([]byte, 1500)
	var replies [][]byte
	for i := 0; i < 3; i++ {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, append([]byte(nil), buf[:n]...))
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 1 || !bytes.Equal(replies[0], replies[2]) {
		t.Fatalf("calls=%d replies=%x", n, replies)
	}
	if s := srv.Stats(); s.Duplicates != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	st, _ := ListenUDP("127.0.0.1:0")
	e := NewEndpoint(st, nil, testConfig())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	cancel()
	<-done
	// A hang guard, not a timing: a loaded machine may take a while.
	for i := 0; i < 6000 && runtime.NumGoroutine() > base; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("goroutines %d > baseline %d", n, base)
	}
}
