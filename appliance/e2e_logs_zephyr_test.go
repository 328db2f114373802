package appliance

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// zephyrEventLog is an independent LwM2M client written on the raw CoAP
// message layer (lwm2m/coap, not lwm2m/client) that behaves like Zephyr's
// Event Log object. It is based on Zephyr's subsys/net/lib/lwm2m:
// lwm2m_obj_event_log.c (object 20 version 1.0, one instance created at
// boot; LogClass 4010 RW U8, LogStart 4011 and LogStop 4012 executes
// whose effect the application supplies, LogStatus 4013 R U8, LogData 4014
// R opaque filled by the application, LogDataFormat 4015 RW U8) and its
// engine's Observe: notifications are confirmable, the Observe option
// carries a counter incremented per notification, an opaque resource is
// written as application/octet-stream (42) unless the server asks for
// another format. The application model here is the common one: LogStart
// empties a buffer, log lines are appended to it, and each append notifies
// the observers of LogData with the whole buffer — so the server sees one
// collection that grows.
type zephyrEventLog struct {
	t    *testing.T
	ep   *coap.Endpoint
	peer coap.Peer
	name string

	mu       sync.Mutex
	class    uint8
	format   uint8
	running  bool
	data     []byte
	obsToken []byte
	obsCount uint32
	starts   int
}

func startZephyrEventLog(t *testing.T, server, name string) *zephyrEventLog {
	t.Helper()
	tr, peer, err := coap.DialUDP("127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	z := &zephyrEventLog{t: t, peer: peer, name: name}
	cfg := coap.DefaultConfig()
	cfg.ACKTimeout = 200 * time.Millisecond
	z.ep = coap.NewEndpoint(tr, coap.HandlerFunc(z.serve), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = z.ep.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Register (Core §6.2.1) with the objects a Zephyr sample announces.
	req := &coap.Message{Code: coap.POST}
	req.SetPath("/rd")
	for _, q := range []string{"ep=" + name, "lt=300", "lwm2m=1.1", "b=U"} {
		req.AddQuery(q)
	}
	req.SetContentFormat(uint16(lwm2m.FormatLinkFormat))
	req.Payload = []byte(`</1/0>,</3/0>,</20/0>`)
	rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
	defer rcancel()
	resp, err := z.ep.Do(rctx, peer, req)
	if err != nil || resp.Code != coap.Created {
		t.Fatalf("register: %v %v", resp, err)
	}
	return z
}

func (z *zephyrEventLog) serve(_ context.Context, r *coap.Request) *coap.Response {
	m := r.Message
	p, err := lwm2m.ParsePath(m.Path())
	if err != nil || p.Len() < 1 || p.ObjectID() != 20 {
		return coap.NewResponse(coap.NotFound)
	}
	if p.Len() >= 2 && p.InstanceID() != 0 {
		return coap.NewResponse(coap.NotFound)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	switch {
	case m.Code == coap.POST && p.Len() == 3 && p.ResourceID() == lwm2m.LogStartID:
		z.running, z.data = true, nil
		z.starts++
		return coap.NewResponse(coap.Changed)
	case m.Code == coap.POST && p.Len() == 3 && p.ResourceID() == lwm2m.LogStopID:
		z.running = false
		return coap.NewResponse(coap.Changed)
	case (m.Code == coap.PUT || m.Code == coap.POST) && p.Len() == 3 && (p.ResourceID() == lwm2m.LogClassID || p.ResourceID() == lwm2m.LogDataFormatID):
		cf, _ := m.ContentFormat()
		recs, err := lwm2m.Decode(lwm2m.Format(cf), p, m.Payload, lwm2m.NewRegistry())
		if err != nil || len(recs) != 1 {
			return coap.ErrorResponse(coap.BadRequest, "bad value")
		}
		n, _ := recs[0].Value.Number()
		if p.ResourceID() == lwm2m.LogClassID {
			z.class = uint8(n)
		} else {
			z.format = uint8(n)
		}
		return coap.NewResponse(coap.Changed)
	case m.Code == coap.GET && p.Len() == 3:
		return z.read(r, p)
	}
	return coap.NewResponse(coap.MethodNotAllowed)
}

// read answers a Read or an Observe of one resource.
func (z *zephyrEventLog) read(r *coap.Request, p lwm2m.Path) *coap.Response {
	m := r.Message
	var v lwm2m.Value
	switch p.ResourceID() {
	case lwm2m.LogClassID:
		v = lwm2m.Int(int64(z.class))
	case lwm2m.LogDataFormatID:
		v = lwm2m.Int(int64(z.format))
	case lwm2m.LogStatusID:
		st := int64(0)
		if !z.running {
			st |= 1
		}
		v = lwm2m.Int(st)
	case lwm2m.LogDataID:
		v = lwm2m.Opaque(append([]byte(nil), z.data...))
	default:
		return coap.NewResponse(coap.NotFound)
	}
	f := lwm2m.FormatText
	if v.Type() == lwm2m.TypeOpaque {
		f = lwm2m.FormatOpaque
	}
	if a, ok := m.Accept(); ok {
		f = lwm2m.Format(a)
	}
	b, err := lwm2m.Encode(f, p, []lwm2m.Record{{Path: p, Value: v}}, lwm2m.NewRegistry())
	if err != nil {
		return coap.ErrorResponse(coap.NotAcceptable, err.Error())
	}
	resp := coap.NewResponse(coap.Content)
	resp.SetContentFormat(uint16(f))
	resp.Payload = b
	if obs, ok := m.Observe(); ok && p.ResourceID() == lwm2m.LogDataID {
		if obs == 0 {
			// The application notifies once the response is written: a
			// notification sent earlier could reach the appliance ahead
			// of it and be taken for it (RFC 7641 §3.2).
			tok := append([]byte(nil), m.Token...)
			z.obsCount++
			resp.SetObserve(z.obsCount)
			resp.Then = func() {
				z.mu.Lock()
				z.obsToken = tok
				z.mu.Unlock()
			}
		} else if string(m.Token) == string(z.obsToken) {
			z.obsToken = nil
		}
	}
	return resp
}

// log is the application logging a line: appended to the collection while
// logging runs, and the observers notified with the whole collection.
func (z *zephyrEventLog) log(line string) {
	z.t.Helper()
	z.mu.Lock()
	if !z.running {
		z.mu.Unlock()
		return
	}
	z.data = append(z.data, line+"\n"...)
	tok := z.obsToken
	z.obsCount++
	n := coap.NewResponse(coap.Content)
	n.SetContentFormat(uint16(lwm2m.FormatOpaque))
	n.SetObserve(z.obsCount)
	n.Payload = append([]byte(nil), z.data...)
	z.mu.Unlock()
	if tok == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := z.ep.Notify(ctx, z.peer, tok, n); err != nil {
		z.t.Fatalf("notify: %v", err)
	}
}

func (z *zephyrEventLog) observed() bool {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.obsToken != nil && z.running
}

// TestInteropZephyrEventLog: the appliance collects a Zephyr-like Event
// Log: writes LogClass, executes LogStart, observes LogData, stores each
// line once although every notification carries the whole collection,
// and stops with LogStop.
func TestInteropZephyrEventLog(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	ta.enableLogAutoStart(2)
	z := startZephyrEventLog(t, ta.a.Addrs().CoAP, "zephyr-evlog")
	eventually(t, "LogStart and Observe of LogData", z.observed)
	z.mu.Lock()
	class := z.class
	z.mu.Unlock()
	if class != 2 {
		t.Fatalf("LogClass %d, want 2", class)
	}
	lines := []string{
		"[00:00:01.100,000] <inf> app: Zephyr LwM2M client started",
		"[00:00:02.200,000] <wrn> net_lwm2m_rd_client: registration retry",
		"[00:00:03.300,000] <err> sensor: i2c read -5",
		"[00:00:04.400,000] <dbg> app: battery 3712 mV",
	}
	for _, l := range lines {
		z.log(l)
	}
	eventually(t, "four lines, each once", func() bool { return len(ta.logs("zephyr-evlog", "")) == 4 })
	got := ta.logs("zephyr-evlog", "")
	wantSev := []string{"debug", "err", "warning", "info"}
	for i, l := range got {
		if l.Line != lines[3-i] || l.Severity != wantSev[i] || l.Class != 2 {
			t.Fatalf("line %d: %+v", i, l)
		}
	}
	// LogStop through the operations API; the application's next lines are
	// not collected.
	var op apiOperation
	ta.do("POST", "/api/v1/devices/zephyr-evlog/operations?wait=20", map[string]any{"type": "execute", "path": "20/0/4012"}, http.StatusOK, &op)
	if op.Status != "confirmed" {
		t.Fatalf("LogStop: %+v", op)
	}
	z.log("[00:00:05.500,000] <inf> app: after stop")
	// A read round-trips through the device after the line: had it been
	// sent, it would be stored now.
	ta.do("POST", "/api/v1/devices/zephyr-evlog/operations?wait=20", map[string]any{"type": "read", "path": "20/0/4014"}, http.StatusOK, &op)
	if err := ta.a.db.FlushLogs(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(ta.logs("zephyr-evlog", "")); n != 4 {
		t.Fatalf("%d lines after LogStop, want 4: %+v", n, ta.logs("zephyr-evlog", ""))
	}
	if !strings.Contains(fmt.Sprint(ta.logs("zephyr-evlog", "q=i2c")), "i2c read -5") {
		t.Fatal("text search")
	}
}
