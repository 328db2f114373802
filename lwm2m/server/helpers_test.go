package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// fastCoAP shortens the RFC 7252 timers so failure paths end quickly,
// but not so far that a loaded machine turns a slow answer into a lost
// one: 200 ms and four retransmissions span about 9 s (RFC 7252 §4.8.2),
// as in lwm2m/client's tests. A test that waits for a retransmission
// timeout on purpose sets its own short timers.
func fastCoAP() coap.Config {
	c := coap.DefaultConfig()
	c.ACKTimeout = 200 * time.Millisecond
	c.MaxRetransmit = 4
	c.ProcessingDelay = 200 * time.Millisecond
	c.RequestTimeout = 3 * time.Second
	return c
}

// timeoutCoAP is fastCoAP with timers short enough for a test that waits
// for a retransmission timeout on purpose (a silent or refusing peer) to
// finish in about 2 s: 100 ms and three retransmissions span 1.5 to
// 2.25 s, still several times a scheduling stall on a loaded machine.
func timeoutCoAP() coap.Config {
	c := fastCoAP()
	c.ACKTimeout = 100 * time.Millisecond
	c.MaxRetransmit = 3
	return c
}

// event is one Handler call, recorded by recorder.
type event struct {
	kind   string // registered, updated, deregistered, notified, sent
	reg    *Registration
	reason DeregisterReason
	obs    *Observation
	recs   []lwm2m.Record
}

// recorder is a Handler that records every call and can refuse. Events
// go to ch without blocking: a test that never reads them (TestFlood)
// must not stall the server's workers in a callback once the buffer is
// full, so an event that finds it full is counted in dropped instead. A
// test that waits for an event reads while it waits, so it never loses
// one.
type recorder struct {
	ch        chan event
	dropped   atomic.Int64
	mu        sync.Mutex
	refuse    error // returned by Registered
	overload  error // returned by Notified and Sent
	refuseN   int   // refuse the next refuseN notifications, then accept
	refusals  int
	refuseFor string
}

func newRecorder() *recorder { return &recorder{ch: make(chan event, 1000)} }

// put records e, or counts it as dropped when nobody reads and ch is full.
func (r *recorder) put(e event) {
	select {
	case r.ch <- e:
	default:
		r.dropped.Add(1)
	}
}

func (r *recorder) Registered(ctx context.Context, reg *Registration) error {
	r.mu.Lock()
	err := r.refuse
	if r.refuseFor != "" && reg.Endpoint != r.refuseFor {
		err = nil
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.put(event{kind: "registered", reg: reg})
	return nil
}
func (r *recorder) Updated(ctx context.Context, reg *Registration) {
	r.put(event{kind: "updated", reg: reg})
}
func (r *recorder) Deregistered(ctx context.Context, reg *Registration, why DeregisterReason) {
	r.put(event{kind: "deregistered", reg: reg, reason: why})
}
func (r *recorder) Notified(ctx context.Context, reg *Registration, o *Observation, recs []lwm2m.Record) error {
	r.mu.Lock()
	err := r.overload
	if r.refuseN > 0 {
		r.refuseN--
		err = errors.New("queue full")
	}
	if err != nil {
		r.refusals++
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.put(event{kind: "notified", reg: reg, obs: o, recs: recs})
	return nil
}
func (r *recorder) Sent(ctx context.Context, reg *Registration, recs []lwm2m.Record) error {
	r.mu.Lock()
	err := r.overload
	r.mu.Unlock()
	if err != nil {
		return err
	}
	r.put(event{kind: "sent", reg: reg, recs: recs})
	return nil
}

// next waits for the next event of a kind, skipping others.
func (r *recorder) next(t testing.TB, kind string) event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-r.ch:
			if e.kind == kind {
				return e
			}
		case <-timeout:
			t.Fatalf("no %s event", kind)
		}
	}
}

// testServer runs a server on 127.0.0.1 and returns its address.
func testServer(t testing.TB, cfg Config, h Handler) (*Server, string) {
	t.Helper()
	s := New(cfg, WithHandler(h))
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, s, tr)
	return s, tr.LocalAddr().String()
}

// serveUntilCleanup runs s on tr until the test ends.
func serveUntilCleanup(t testing.TB, s *Server, tr coap.Transport) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, tr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func testConfig() Config {
	c := DefaultConfig()
	c.CoAP = fastCoAP()
	c.RequestTimeout = 3 * time.Second
	return c
}

// device is a small raw LwM2M device on a coap.Endpoint: it registers by
// hand and serves a few resources, so the server is tested against exact
// messages. (The full client engine is in lwm2m/client.)
type device struct {
	t      testing.TB
	ep     *coap.Endpoint
	server coap.Peer
	loc    string
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	values  map[string]string // text values by path
	obsTok  []byte            // last observe registration token
	obsPeer coap.Peer
	obsReq  *coap.Message
	cancels int // GETs with Observe=1
	got     []*coap.Message
	handler coap.HandlerFunc // overrides the default resources when set
}

func newDevice(t testing.TB, addr string) *device {
	return newDeviceFrom(t, "127.0.0.1:0", addr)
}

func newDeviceFrom(t testing.TB, local, addr string) *device {
	t.Helper()
	return newDeviceWith(t, local, addr, fastCoAP())
}

// newDeviceWith makes a device with its own CoAP parameters (benchmarks
// use the RFC defaults: a loaded machine must not turn into timeouts).
func newDeviceWith(t testing.TB, local, addr string, cc coap.Config) *device {
	t.Helper()
	tr, peer, err := coap.DialUDP(local, addr)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, server: peer, values: map[string]string{"/3/0/0": "FlowNexus", "/3303/0/5700": "21.5", "/3/0/1": "sim"}, done: make(chan error, 1)}
	d.ep = coap.NewEndpoint(tr, coap.HandlerFunc(d.serve), cc)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() { d.done <- d.ep.Run(ctx) }()
	t.Cleanup(d.stop)
	return d
}

func (d *device) stop() {
	if d.cancel != nil {
		d.cancel()
		<-d.done
		d.cancel = nil
	}
}

func (d *device) serve(ctx context.Context, r *coap.Request) *coap.Response {
	d.mu.Lock()
	d.got = append(d.got, r.Message)
	h := d.handler
	d.mu.Unlock()
	if h != nil {
		return h(ctx, r)
	}
	m := r.Message
	path := m.Path()
	switch m.Code {
	case coap.GET:
		if a, ok := m.Accept(); ok && a == uint16(lwm2m.FormatLinkFormat) {
			resp := coap.NewResponse(coap.Content)
			resp.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
			resp.Payload = []byte("</3/0>,</3/0/0>,</3/0/1>;pmin=10")
			return resp
		}
		if a, ok := m.Accept(); ok && a != uint16(lwm2m.FormatText) {
			return coap.ErrorResponse(coap.NotAcceptable, "text only")
		}
		d.mu.Lock()
		v, ok := d.values[path]
		if obs, has := m.Observe(); has && ok {
			if obs == 0 {
				d.obsTok, d.obsPeer, d.obsReq = append([]byte(nil), m.Token...), r.Peer, m
			} else {
				d.cancels++
			}
		}
		d.mu.Unlock()
		if !ok {
			return coap.ErrorResponse(coap.NotFound, "")
		}
		resp := coap.NewResponse(coap.Content)
		resp.SetContentFormat(uint16(lwm2m.FormatText))
		if obs, has := m.Observe(); has && obs == 0 {
			resp.SetObserve(1)
		}
		resp.Payload = []byte(v)
		return resp
	case coap.PUT, coap.POST:
		if path == "/3/0/4" && m.Code == coap.POST {
			d.mu.Lock()
			d.values["/exec-args"] = string(m.Payload)
			d.mu.Unlock()
			return coap.NewResponse(coap.Changed)
		}
		if path == "/3303" && m.Code == coap.POST {
			resp := coap.NewResponse(coap.Created)
			resp.AddOption(coap.LocationPath, []byte("3303"))
			resp.AddOption(coap.LocationPath, []byte("7"))
			return resp
		}
		if m.Code == coap.PUT && len(m.Payload) == 0 {
			d.mu.Lock()
			d.values["/attrs"+path] = strings.Join(m.Queries(), "&")
			d.mu.Unlock()
			return coap.NewResponse(coap.Changed)
		}
		if path == "/3/0/0" {
			return coap.ErrorResponse(coap.MethodNotAllowed, "read-only")
		}
		cf, _ := m.ContentFormat()
		recs, err := lwm2m.Decode(lwm2m.Format(cf), lwm2m.MustParsePath(path), m.Payload, nil)
		if err != nil {
			return coap.ErrorResponse(coap.BadRequest, err.Error())
		}
		d.store(recs)
		return coap.NewResponse(coap.Changed)
	case coap.IPATCH:
		cf, _ := m.ContentFormat()
		recs, err := lwm2m.Decode(lwm2m.Format(cf), lwm2m.Path{}, m.Payload, nil)
		if err != nil {
			return coap.ErrorResponse(coap.BadRequest, err.Error())
		}
		d.store(recs)
		return coap.NewResponse(coap.Changed)
	case coap.FETCH:
		cf, _ := m.ContentFormat()
		paths, err := lwm2m.DecodePaths(lwm2m.Format(cf), m.Payload)
		if err != nil {
			return coap.ErrorResponse(coap.BadRequest, err.Error())
		}
		var recs []lwm2m.Record
		d.mu.Lock()
		for _, p := range paths {
			if v, ok := d.values[p.String()]; ok {
				recs = append(recs, lwm2m.Record{Path: p, Value: lwm2m.String(v)})
			}
		}
		if obs, has := m.Observe(); has && obs == 0 {
			d.obsTok, d.obsPeer, d.obsReq = append([]byte(nil), m.Token...), r.Peer, m
		}
		d.mu.Unlock()
		payload, err := lwm2m.Encode(lwm2m.FormatSenMLJSON, lwm2m.Path{}, recs, nil)
		if err != nil {
			return coap.ErrorResponse(coap.InternalServerError, err.Error())
		}
		resp := coap.NewResponse(coap.Content)
		resp.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
		if obs, has := m.Observe(); has && obs == 0 {
			resp.SetObserve(1)
		}
		resp.Payload = payload
		return resp
	case coap.DELETE:
		return coap.NewResponse(coap.Deleted)
	}
	return coap.ErrorResponse(coap.MethodNotAllowed, "")
}

func (d *device) store(recs []lwm2m.Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range recs {
		d.values[r.Path.String()] = r.Value.Text()
	}
}

func (d *device) value(p string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.values[p]
}

// req sends a raw request to the server.
func (d *device) req(code coap.Code, path string, queries []string, payload []byte, opts ...coap.Option) *coap.Message {
	d.t.Helper()
	m := &coap.Message{Code: code, Payload: payload}
	m.SetPath(path)
	for _, q := range queries {
		m.AddQuery(q)
	}
	m.Options = append(m.Options, opts...)
	// The endpoint's transmission parameters decide when a request fails;
	// this bound only keeps a broken test from hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := d.ep.Do(ctx, d.server, m)
	if err != nil {
		d.t.Fatalf("%s %s: %v", code, path, err)
	}
	return resp
}

const links = `</>;rt="oma.lwm2m";ct="0 110 112",</1/0>,</3/0>,</3303>;ver=1.1,</3303/0>`

// register registers the device and remembers its location.
func (d *device) register(ep string, extra ...string) *coap.Message {
	d.t.Helper()
	q := append([]string{"ep=" + ep, "lt=300", "lwm2m=1.1", "b=U"}, extra...)
	resp := d.req(coap.POST, "/rd", q, []byte(links), coap.Option{ID: coap.ContentFormat, Value: []byte{40}})
	if resp.Code != coap.Created {
		d.t.Fatalf("register %s: %s %s", ep, resp.Code, resp.Payload)
	}
	d.loc = "/" + strings.Join(resp.LocationPath(), "/")
	return resp
}

// notify sends a notification for the last observe registration.
func (d *device) notify(typ coap.Type, seq uint32, payload string, cf lwm2m.Format) error {
	d.mu.Lock()
	tok, peer := d.obsTok, d.obsPeer
	d.mu.Unlock()
	if tok == nil {
		return errors.New("no observation")
	}
	n := coap.NewResponse(coap.Content)
	n.Type = typ
	n.SetObserve(seq)
	n.SetContentFormat(uint16(cf))
	n.Payload = []byte(payload)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.ep.Notify(ctx, peer, tok, n)
}

// waitFor polls a condition that another goroutine makes true.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	// A generous bound: it only turns a hang into a failure, and a loaded
	// machine must not turn a slow pass into one.
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// checkGoroutines fails when goroutines stay above base.
func checkGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			n := runtime.Stack(buf, true)
			t.Fatalf("goroutines: %d > baseline %d\n%s", runtime.NumGoroutine(), base, buf[:n])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

var _ = fmt.Sprintf
