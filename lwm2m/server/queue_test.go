package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

func TestQueueMode(t *testing.T) {
	cfg := testConfig()
	cfg.AwakeWindow = time.Nanosecond // asleep right after every uplink
	rec := newRecorder()
	s, addr := testServer(t, cfg, rec)
	d := newDevice(t, addr)
	d.register("sleepy", "Q")
	if r := rec.next(t, "registered").reg; !r.QueueMode {
		t.Fatal("not queue mode")
	}
	type result struct {
		recs []lwm2m.Record
		err  error
	}
	done := make(chan result, 1)
	// The Register's response wakes queued requests right after it is
	// sent; a read that starts before that moment goes out at once. Start
	// reads until one is seen queued.
	for queued := false; !queued; {
		go func() {
			recs, err := s.Read(context.Background(), "sleepy", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
			done <- result{recs, err}
		}()
		waitFor(t, "the read to queue or finish", func() bool {
			if s.Stats().Queued == 1 {
				queued = true
				return true
			}
			select {
			case r := <-done:
				if r.err != nil {
					t.Fatal(r.err)
				}
				d.mu.Lock()
				d.got = nil
				d.mu.Unlock()
				return true
			default:
				return false
			}
		})
	}
	d.mu.Lock()
	n := len(d.got)
	d.mu.Unlock()
	if n != 0 {
		t.Fatal("request sent to a sleeping device")
	}
	// The device wakes and sends an Update: the request follows it.
	if resp := d.req(coap.POST, d.loc, nil, nil); resp.Code != coap.Changed {
		t.Fatal(resp.Code)
	}
	r := <-done
	if r.err != nil || r.recs[0].Value.Text() != "FlowNexus" {
		t.Fatalf("%v %v", r.recs, r.err)
	}
	// A request whose context ends before the device wakes fails with
	// ErrTimeout and is never sent.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Read(ctx, "sleepy", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); !errors.Is(err, ErrTimeout) {
		t.Fatalf("asleep: %v", err)
	}
	// A queued request for a device that de-registers fails at once.
	go func() {
		_, err := s.Read(context.Background(), "sleepy", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
		done <- result{nil, err}
	}()
	waitFor(t, "the read to queue", func() bool { return s.Stats().Queued == 1 })
	d.req(coap.DELETE, d.loc, nil, nil)
	if r := <-done; !errors.Is(r.err, ErrNotRegistered) {
		t.Fatalf("after de-register: %v", r.err)
	}
}

func TestCloseFailsQueued(t *testing.T) {
	cfg := testConfig()
	cfg.AwakeWindow = time.Nanosecond
	rec := newRecorder()
	s, addr := testServer(t, cfg, rec)
	d := newDevice(t, addr)
	d.register("closing", "Q")
	rec.next(t, "registered")
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(ctxT(t), "closing", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
		done <- err
	}()
	waitFor(t, "the read to queue or finish", func() bool { return s.Stats().Queued == 1 || len(done) == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("queued read: %v", err)
	}
	if _, err := s.Read(ctxT(t), "closing", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if resp := d.req(coap.POST, "/rd", []string{"ep=late"}, nil); resp.Code != coap.ServiceUnavailable {
		t.Fatalf("register after close: %s", resp.Code)
	}
}

func TestQueueModeAwakeWindow(t *testing.T) {
	cfg := testConfig()
	cfg.AwakeWindow = time.Hour
	rec := newRecorder()
	s, addr := testServer(t, cfg, rec)
	d := newDevice(t, addr)
	d.register("awake", "Q")
	rec.next(t, "registered")
	// Within the window after Register the request goes at once.
	if _, err := s.Read(ctxT(t), "awake", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
}

// fileBody serves a byte slice at offsets, like a firmware file.
type fileBody []byte

func (f fileBody) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f)) {
		return 0, fmt.Errorf("offset %d past %d", off, len(f))
	}
	return copy(p, f[off:]), nil
}

func TestExtraHandlerBlock2(t *testing.T) {
	image := bytes.Repeat([]byte("firmware-block-"), 700) // 10500 bytes
	s := New(testConfig())
	var mu sync.Mutex
	var blocks []uint32
	s.Handle("/fw/", coap.HandlerFunc(func(ctx context.Context, r *coap.Request) *coap.Response {
		if r.Message.Path() != "/fw/abc" {
			return coap.ErrorResponse(coap.NotFound, "no such image")
		}
		b, _ := r.Message.Block(coap.Block2)
		mu.Lock()
		blocks = append(blocks, b.Num)
		mu.Unlock()
		resp := coap.NewResponse(coap.Content)
		resp.SetContentFormat(uint16(lwm2m.FormatOpaque))
		resp.SetOption(coap.ETag, []byte("abc1"))
		resp.Body, resp.BodySize = fileBody(image), int64(len(image))
		return resp
	}))
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, tr) }()
	defer func() { cancel(); <-done }()
	d := newDevice(t, tr.LocalAddr().String())
	// A device downloads firmware after the server wrote it the package
	// URI: its address is verified by then, so it gets full blocks (an
	// unverified one gets small ones, RFC 7252 §11.3, TestNoAmplification).
	d.register("fw-dev")
	if _, err := s.Read(ctxT(t), "fw-dev", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	resp := d.req(coap.GET, "/fw/abc", nil, nil)
	if resp.Code != coap.Content || !bytes.Equal(resp.Payload, image) {
		t.Fatalf("%s, %d bytes", resp.Code, len(resp.Payload))
	}
	if etag, _ := resp.ETag(); string(etag) != "abc1" {
		t.Fatalf("etag %q", etag)
	}
	if size, _ := resp.Uint(coap.Size2); size != uint32(len(image)) {
		t.Fatalf("Size2 %d", size)
	}
	mu.Lock()
	if len(blocks) != 11 || blocks[10] != 10 {
		t.Fatalf("blocks %v", blocks)
	}
	mu.Unlock()
	// A block past the end is refused, and the fixed routes still work.
	m := &coap.Message{Code: coap.GET}
	m.SetPath("/fw/abc")
	m.SetBlock(coap.Block2, coap.Block{Num: 99, SZX: 6})
	if r, err := d.ep.Do(ctxT(t), d.server, m); err != nil || r.Code != coap.BadOption {
		t.Fatalf("past the end: %v %v", r, err)
	}
	if r := d.req(coap.GET, "/fw/zzz", nil, nil); r.Code != coap.NotFound {
		t.Fatal(r.Code)
	}
	if r := d.req(coap.GET, "/rd", nil, nil); r.Code != coap.MethodNotAllowed {
		t.Fatal(r.Code)
	}
}

// TestFlood: one peer floods the server; others are still served and the
// drops are counted.
// TestFlood: one peer floods Registers while quiet peers register. What the
// server controls is asserted: the flood is rate limited per peer and every
// refused datagram is counted, while the quiet peers register within the
// normal RFC 7252 §4.2 retransmission schedule. The flood is sent in bursts,
// each only after the server has read the previous one, so the socket's
// receive buffer never overflows: a kernel drop would make the outcome a
// matter of timing, and that is not what this test is about (the buffer's
// size under bursts is a deployment setting, measured by `make bench`).
func TestFlood(t *testing.T) {
	cfg := testConfig()
	cfg.CoAP.PeerRate = 100
	cfg.CoAP.PeerBurst = 50
	rec := newRecorder()
	s, addr := testServer(t, cfg, rec)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const burst, maxFlood = 32, 200_000
	base := s.Stats().CoAP.Received
	stop := make(chan struct{})
	var sent uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, Token: []byte{1}}
		m.SetPath("/rd")
		m.AddQuery("ep=flood")
		for sent < maxFlood {
			select {
			case <-stop:
				return
			default:
			}
			for i := 0; i < burst; i++ {
				m.MessageID = uint16(sent)
				b, _ := m.Marshal()
				if _, err := c.Write(b); err != nil {
					t.Errorf("flood write: %v", err)
					return
				}
				sent++
			}
			// Lockstep: the next burst only once the server read this one.
			for s.Stats().CoAP.Received < base+sent {
				select {
				case <-stop:
					return
				default:
					runtime.Gosched()
				}
			}
		}
	}()
	waitFor(t, "rate limiting", func() bool { return s.Stats().CoAP.RateLimited > 1000 })
	for i := 0; i < 5; i++ {
		// RFC 7252 default transmission parameters: a quiet peer waits
		// and retransmits as a real device does, however loaded the host.
		d := newDeviceWith(t, "127.0.0.1:0", addr, coap.DefaultConfig())
		d.register(fmt.Sprintf("quiet-%d", i))
	}
	close(stop)
	wg.Wait()
	// The last burst may still be in the socket buffer.
	waitFor(t, "the server to read the last burst", func() bool { return s.Stats().CoAP.Received >= base+sent })
	st := s.Stats()
	if st.Registered != 6 {
		t.Fatalf("registered %d, want the flooder and 5 quiet peers: %+v", st.Registered, st)
	}
	// Every flood datagram was read and then either refused by the rate
	// limit, refused as overload, or handled: all of them are counted.
	waitFor(t, "every flood datagram to be accounted for", func() bool {
		c := s.Stats().CoAP
		return c.RateLimited+c.Overloaded+c.Requests+c.Duplicates >= sent
	})
}

func TestGarbageDatagrams(t *testing.T) {
	s, addr := testServer(t, testConfig(), newRecorder())
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, g := range [][]byte{{}, {0x40}, {0xff, 0xff, 0xff, 0xff}, {0x48, 1, 0, 1}, {0x40, 1, 0, 1, 0xff}, []byte(strings.Repeat("\x41", 40))} {
		_, _ = c.Write(g)
	}
	// The server is still alive and answering.
	d := newDevice(t, addr)
	d.register("after-garbage")
	if s.Stats().CoAP.Malformed < 4 {
		t.Fatalf("%+v", s.Stats().CoAP)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		rec := newRecorder()
		s := New(testConfig(), WithHandler(rec))
		tr, err := coap.ListenUDP("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, tr) }()
		tr2, peer, _ := coap.DialUDP("127.0.0.1:0", tr.LocalAddr().String())
		dev := coap.NewEndpoint(tr2, nil, fastCoAP())
		dctx, dcancel := context.WithCancel(context.Background())
		ddone := make(chan error, 1)
		go func() { ddone <- dev.Run(dctx) }()
		m := &coap.Message{Code: coap.POST, Payload: []byte(links)}
		m.SetPath("/rd")
		m.AddQuery("ep=leak")
		if _, err := dev.Do(ctxT(t), peer, m); err != nil {
			t.Fatal(err)
		}
		// A request the device answers with 4.04 (it has no handler).
		_, _ = s.Read(ctxT(t), "leak", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
		dcancel()
		<-ddone
		cancel()
		<-done
	}()
	checkGoroutines(t, base)
}
