package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// patientConfig makes requests to a silent device wait as good as forever
// (long ACK timeout, long request timeout), so that only cancellation can
// end them: the tests below fail by their deadline if it does not.
func patientConfig() Config {
	c := testConfig()
	c.CoAP.ACKTimeout = time.Hour
	c.CoAP.RequestTimeout = time.Hour
	c.RequestTimeout = time.Hour
	return c
}

// silentDevice registers like newDevice but never answers the server's
// requests: its handler blocks until the test ends and sends no empty ACK.
func silentDevice(t *testing.T, addr string) *device {
	t.Helper()
	// RFC timers for the device's own requests: 32 devices registering
	// at once on a loaded machine (or under -race) must not time out.
	cc := coap.DefaultConfig()
	cc.ProcessingDelay = 0
	d := newDeviceWith(t, "127.0.0.1:0", addr, cc)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	d.handler = func(ctx context.Context, r *coap.Request) *coap.Response {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil
	}
	return d
}

// TestReplacedRegistrationCancelsQueuedWork: requests queued for a device
// (one in flight, the rest waiting for its NSTART slot) fail with
// ErrRegistrationEnded as soon as a new Register replaces the registration
// they were made for, and a request bound to the old registration with
// ForRegistration is not sent to the new one.
func TestReplacedRegistrationCancelsQueuedWork(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, patientConfig(), rec)
	d := silentDevice(t, addr)
	d.register("replaced")
	old := rec.next(t, "registered").reg
	const n = 5
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.Read(context.Background(), "replaced", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
			errs <- err
		}()
	}
	waitFor(t, "one request in flight and four waiting", func() bool {
		st := s.Stats().CoAP
		return st.Pending == 1 && st.Waiting == n-1
	})
	d.register("replaced")
	rec.next(t, "registered")
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrRegistrationEnded) || !errors.Is(err, ErrNotRegistered) {
				t.Fatalf("queued request: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("queued requests of the replaced registration still wait")
		}
	}
	if st := s.Stats().CoAP; st.Pending != 0 || st.Waiting != 0 {
		t.Fatalf("left behind: %+v", st)
	}
	sent := s.Stats().Requests
	_, err := s.Read(ForRegistration(context.Background(), old.ID), "replaced", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
	if !errors.Is(err, ErrRegistrationEnded) || s.Stats().Requests != sent {
		t.Fatalf("request bound to the old registration: %v, requests %d → %d", err, sent, s.Stats().Requests)
	}
}

// followUps is a Handler that, like the appliance, starts an observe and
// reads after every Register, bound to that registration.
type followUps struct {
	NopHandler
	srv             func() *Server
	wg              sync.WaitGroup
	started, failed atomic.Int64
	others          atomic.Int64 // follow-ups that failed otherwise
}

func (f *followUps) Registered(ctx context.Context, r *Registration) error {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		ctx := ForRegistration(context.Background(), r.ID)
		s := f.srv()
		_ = s.AwaitRegistration(ctx, r.Endpoint, r.ID) // on failure the follow-ups fail at once
		f.run(func() error {
			_, _, err := s.Observe(ctx, r.Endpoint, lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone)
			return err
		})
		f.run(func() error {
			_, err := s.Read(ctx, r.Endpoint, lwm2m.MustParsePath("/3/0/3"), lwm2m.FormatNone)
			return err
		})
	}()
	return nil
}

func (f *followUps) run(req func() error) {
	f.started.Add(1)
	switch err := req(); {
	case errors.Is(err, ErrNotRegistered) || errors.Is(err, ErrDeviceBusy):
		f.failed.Add(1)
	default:
		f.others.Add(1)
	}
}

// TestRegisterFloodBounded: 32 devices that never answer re-register over
// and over, each Register starting follow-up requests. Every follow-up of
// a replaced registration is cancelled, none is left waiting, and once the
// devices de-register the goroutines return to the baseline (issue 15:
// they piled up to 47,045 and 1 GB).
func TestRegisterFloodBounded(t *testing.T) {
	const devices, rounds = 32, 15
	base := runtime.NumGoroutine()
	func() {
		f := &followUps{}
		s := New(patientConfig(), WithHandler(f))
		f.srv = func() *Server { return s }
		tr, err := coap.ListenUDP("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tr.LocalAddr().String()
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- s.Serve(ctx, tr) }()
		devs := make([]*device, devices)
		for i := range devs {
			devs[i] = silentDevice(t, addr)
		}
		var wg sync.WaitGroup
		for i, d := range devs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					d.register(fmt.Sprintf("flood-%d", i))
				}
			}()
		}
		wg.Wait()
		// Only the last registration of each device may still have work.
		waitFor(t, "follow-ups of replaced registrations to end", func() bool {
			st := s.Stats().CoAP
			return st.Pending <= devices && st.Waiting <= devices
		})
		for _, d := range devs {
			if r := d.req(coap.DELETE, d.loc, nil, nil); r.Code != coap.Deleted {
				t.Fatalf("de-register: %s", r.Code)
			}
		}
		f.wg.Wait()
		if st := s.Stats(); st.CoAP.Pending != 0 || st.CoAP.Waiting != 0 || st.Registered != 0 {
			t.Fatalf("left behind: %+v", st)
		}
		// Every follow-up ended by cancellation (none was answered).
		if f.others.Load() != 0 || f.failed.Load() != f.started.Load() || f.started.Load() == 0 {
			t.Fatalf("follow-ups: %d started, %d cancelled, %d otherwise", f.started.Load(), f.failed.Load(), f.others.Load())
		}
		for _, d := range devs {
			d.stop()
		}
		cancel()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	}()
	checkGoroutines(t, base)
}

// TestUnknownEndpointFlood: Registers of endpoints the handler refuses,
// from several source addresses, are answered 4.03 at no more than three
// times their size (counted in bytes: no amplification, RFC 7252 §11.3),
// counted as refused, and leave no state behind beyond the bounded
// deduplication cache.
func TestUnknownEndpointFlood(t *testing.T) {
	const sources, perSource, maxDedup = 8, 200, 500
	cfg := testConfig()
	cfg.CoAP.MaxDedup = maxDedup
	cfg.CoAP.ProcessingDelay = 0 // piggybacked answers only, to count them one to one
	rec := newRecorder()
	rec.refuse = fmt.Errorf("%w: endpoint is not provisioned and unknown endpoints are refused", ErrForbidden)
	s, addr := testServer(t, cfg, rec)
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var sent, got atomic.Int64
	for src := range sources {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(2+src))}, ua)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for i := range perSource {
				m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: uint16(i), Token: []byte{byte(src), byte(i)}}
				m.SetPath("/rd")
				m.AddQuery(fmt.Sprintf("ep=unknown-%d-%d", src, i))
				m.Payload = []byte("</3/0>")
				b, _ := m.Marshal()
				if _, err := c.Write(b); err != nil {
					t.Error(err)
					return
				}
				sent.Add(int64(len(b)))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					t.Error(err)
					return
				}
				got.Add(int64(n))
				r, err := coap.Unmarshal(buf[:n])
				if err != nil || r.Code != coap.Forbidden || n > 3*len(b) {
					t.Errorf("answer to a %d-byte Register: %d bytes, %v %v", len(b), n, r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Refused != sources*perSource || st.Registered != 0 {
		t.Fatalf("refused %d of %d, registered %d", st.Refused, sources*perSource, st.Registered)
	}
	if st.CoAP.Dedup > maxDedup || st.CoAP.DedupEvicted < sources*perSource-maxDedup || st.CoAP.Peers > sources {
		t.Fatalf("state left: %+v", st.CoAP)
	}
	if got.Load() > 3*sent.Load() {
		t.Fatalf("received %d bytes for %d sent", got.Load(), sent.Load())
	}
	t.Logf("sent %d bytes, received %d; %d responses trimmed", sent.Load(), got.Load(), st.CoAP.Trimmed)
}

// awaiter is a Handler whose Registered waits, like the appliance's
// follow-up work, for the registration to be stored.
type awaiter struct {
	NopHandler
	srv    atomic.Pointer[Server]
	refuse atomic.Bool
	got    chan error
}

func (a *awaiter) Registered(ctx context.Context, r *Registration) error {
	go func() { a.got <- a.srv.Load().AwaitRegistration(context.Background(), r.Endpoint, r.ID) }()
	if a.refuse.Load() {
		return fmt.Errorf("%w: no", ErrForbidden)
	}
	return nil
}

// TestAwaitRegistration: work started from Registered waits until the
// registration is stored, and learns at once when the Register was refused
// or the registration has ended, instead of polling for it.
func TestAwaitRegistration(t *testing.T) {
	a := &awaiter{got: make(chan error, 1)}
	s, addr := testServer(t, testConfig(), a)
	a.srv.Store(s)
	d := newDevice(t, addr)
	d.register("await-1")
	if err := <-a.got; err != nil {
		t.Fatalf("accepted registration: %v", err)
	}
	reg, _ := s.Registration("await-1")
	if r := d.req(coap.DELETE, d.loc, nil, nil); r.Code != coap.Deleted {
		t.Fatal(r.Code)
	}
	if err := s.AwaitRegistration(ctxT(t), "await-1", reg.ID); !errors.Is(err, ErrRegistrationEnded) {
		t.Fatalf("ended registration: %v", err)
	}
	a.refuse.Store(true)
	if r := d.req(coap.POST, "/rd", []string{"ep=await-2"}, nil); r.Code != coap.Forbidden {
		t.Fatal(r.Code)
	}
	if err := <-a.got; !errors.Is(err, ErrRegistrationEnded) {
		t.Fatalf("refused registration: %v", err)
	}
	s.mu.Lock()
	left := len(s.pending)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d pending left", left)
	}
}
