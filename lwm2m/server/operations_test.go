package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

func registered(t *testing.T, cfg Config) (*Server, *recorder, *device) {
	t.Helper()
	rec := newRecorder()
	s, addr := testServer(t, cfg, rec)
	d := newDevice(t, addr)
	d.register("dev")
	rec.next(t, "registered")
	return s, rec, d
}

func TestDeviceManagement(t *testing.T) {
	s, _, d := registered(t, testConfig())
	ctx := ctxT(t)
	p := lwm2m.MustParsePath

	recs, err := s.Read(ctx, "dev", p("/3/0/0"), lwm2m.FormatText)
	if err != nil || len(recs) != 1 || recs[0].Path != p("/3/0/0") || recs[0].Value.Text() != "FlowNexus" {
		t.Fatalf("read: %v %v", recs, err)
	}
	// No Accept and no Content-Format in the answer: text for a resource.
	if recs, err := s.Read(ctx, "dev", p("/3/0/1"), lwm2m.FormatNone); err != nil || recs[0].Value.Text() != "sim" {
		t.Fatalf("read without accept: %v %v", recs, err)
	}
	if _, err := s.Read(ctx, "dev", p("/3/0/0"), lwm2m.FormatTLV); !errors.Is(err, ErrNotAcceptable) {
		t.Fatalf("unacceptable accept: %v", err)
	}
	var re *ResponseError
	if _, err := s.Read(ctx, "dev", p("/3/0/99"), lwm2m.FormatText); !errors.Is(err, ErrNotFound) || !errors.As(err, &re) || re.Code != coap.NotFound {
		t.Fatalf("not found: %v", err)
	}
	links, err := s.Discover(ctx, "dev", p("/3/0"))
	if err != nil || !strings.Contains(links, "</3/0/1>;pmin=10") {
		t.Fatalf("discover: %q %v", links, err)
	}
	// Write replace (PUT) and partial update (POST).
	if err := s.Write(ctx, "dev", p("/3303/0/5700"), lwm2m.FormatText, []lwm2m.Record{{Path: p("/3303/0/5700"), Value: lwm2m.Float(3.5)}}, true); err != nil {
		t.Fatal(err)
	}
	if v := d.value("/3303/0/5700"); v != "3.5" {
		t.Fatalf("written %q", v)
	}
	if err := s.Write(ctx, "dev", p("/3303/0"), lwm2m.FormatSenMLJSON, []lwm2m.Record{{Path: p("/3303/0/5701"), Value: lwm2m.String("Cel")}}, false); err != nil {
		t.Fatal(err)
	}
	if v := d.value("/3303/0/5701"); v != "Cel" {
		t.Fatalf("partial update %q", v)
	}
	if err := s.Write(ctx, "dev", p("/3/0/0"), lwm2m.FormatText, []lwm2m.Record{{Path: p("/3/0/0"), Value: lwm2m.String("x")}}, true); !errors.Is(err, ErrMethodNotAllowed) {
		t.Fatalf("write read-only: %v", err)
	}
	var attrs lwm2m.Attributes
	attrs.PMin, attrs.PMax, attrs.GT = lwm2m.AttrUint(10), lwm2m.AttrUint(60), lwm2m.AttrFloat(20.5)
	if err := s.WriteAttributes(ctx, "dev", p("/3303/0/5700"), attrs); err != nil {
		t.Fatal(err)
	}
	if v := d.value("/attrs/3303/0/5700"); v != "pmin=10&pmax=60&gt=20.5" {
		t.Fatalf("attributes %q", v)
	}
	bad := lwm2m.Attributes{PMin: lwm2m.AttrUint(60), PMax: lwm2m.AttrUint(10)}
	if err := s.WriteAttributes(ctx, "dev", p("/3303/0/5700"), bad); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("pmin > pmax: %v", err)
	}
	if err := s.Execute(ctx, "dev", p("/3/0/4"), "0='now',1"); err != nil {
		t.Fatal(err)
	}
	if v := d.value("/exec-args"); v != "0='now',1" {
		t.Fatalf("execute args %q", v)
	}
	if err := s.Execute(ctx, "dev", p("/3/0"), ""); !errors.Is(err, lwm2m.ErrInvalidPath) {
		t.Fatalf("execute on instance: %v", err)
	}
	inst, err := s.Create(ctx, "dev", p("/3303"), lwm2m.FormatSenMLJSON, []lwm2m.Record{{Path: p("/3303/7/5700"), Value: lwm2m.Float(1)}})
	if err != nil || inst != p("/3303/7") {
		t.Fatalf("create: %v %v", inst, err)
	}
	if err := s.Delete(ctx, "dev", p("/3303/7")); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadComposite(ctx, "dev", []lwm2m.Path{p("/3/0/0"), p("/3303/0/5700")}, lwm2m.FormatSenMLJSON)
	if err != nil || len(got) != 2 {
		t.Fatalf("read-composite: %v %v", got, err)
	}
	if err := s.WriteComposite(ctx, "dev", lwm2m.FormatSenMLJSON, []lwm2m.Record{{Path: p("/3/0/1"), Value: lwm2m.String("y")}, {Path: p("/3303/0/5701"), Value: lwm2m.String("K")}}); err != nil {
		t.Fatal(err)
	}
	if d.value("/3/0/1") != "y" || d.value("/3303/0/5701") != "K" {
		t.Fatal("write-composite not applied")
	}
	if _, err := s.ReadComposite(ctx, "dev", []lwm2m.Path{p("/3/0/0")}, lwm2m.FormatTLV); !errors.Is(err, lwm2m.ErrUnsupportedFormat) {
		t.Fatalf("composite in TLV: %v", err)
	}
	// Check the wire: methods, paths, formats.
	d.mu.Lock()
	var seen []string
	for _, m := range d.got {
		seen = append(seen, m.Code.String()+" "+m.Path())
	}
	d.mu.Unlock()
	want := "GET /3/0/0,GET /3/0/1,GET /3/0/0,GET /3/0/99,GET /3/0,PUT /3303/0/5700,POST /3303/0,PUT /3/0/0,PUT /3303/0/5700,POST /3/0/4,POST /3303,DELETE /3303/7,FETCH /,iPATCH /"
	if strings.Join(seen, ",") != want {
		t.Fatalf("wire:\n%s\nwant\n%s", strings.Join(seen, ","), want)
	}
	if _, err := s.Read(ctx, "nobody", p("/3/0/0"), lwm2m.FormatText); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	if st := s.Stats(); st.Requests < 14 || st.RequestErrors < 3 {
		t.Fatalf("%+v", st)
	}
}

func TestRequestTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.CoAP = timeoutCoAP() // the server waits for a silent device
	s, _, d := registered(t, cfg)
	d.stop() // the device goes silent
	start := time.Now()
	_, err := s.Read(ctxT(t), "dev", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := s.Read(ctx, "dev", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); !errors.Is(err, ErrTimeout) {
		t.Fatalf("deadline: %v", err)
	}
	_ = start
	if st := s.Stats(); st.CoAP.Retransmissions < 2 || st.CoAP.Timeouts < 1 {
		t.Fatalf("%+v", st.CoAP)
	}
}

func TestAlternateRootPath(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	d := newDevice(t, addr)
	var path atomic.Value
	d.handler = func(ctx context.Context, r *coap.Request) *coap.Response {
		path.Store(r.Message.Path())
		resp := coap.NewResponse(coap.Content)
		resp.SetContentFormat(0)
		resp.Payload = []byte("v")
		return resp
	}
	if resp := d.req(coap.POST, "/rd", []string{"ep=alt"}, []byte(`</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>`), cfLinks); resp.Code != coap.Created {
		t.Fatal(resp.Code)
	}
	rec.next(t, "registered")
	if _, err := s.Read(ctxT(t), "alt", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	if p := path.Load(); p != "/lwm2m/3/0/0" {
		t.Fatalf("path %v", p)
	}
}

func TestObserve(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	// The device waits for a refused notification to time out below.
	dcc := timeoutCoAP()
	d := newDeviceWith(t, "127.0.0.1:0", addr, dcc)
	d.register("dev")
	rec.next(t, "registered")
	ctx := ctxT(t)
	o, recs, err := s.Observe(ctx, "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText)
	if err != nil || len(recs) != 1 || recs[0].Value.Text() != "21.5" || o.Endpoint != "dev" || o.ID == "" {
		t.Fatalf("observe: %+v %v %v", o, recs, err)
	}
	if obs := s.Observations("dev"); len(obs) != 1 || obs[0] != o {
		t.Fatalf("observations %v", obs)
	}
	// CON and NON notifications reach the handler with the observation.
	for i, typ := range []coap.Type{coap.Confirmable, coap.NonConfirmable} {
		v := fmt.Sprint(22 + i)
		if err := d.notify(typ, uint32(2+i), v, lwm2m.FormatText); err != nil {
			t.Fatal(err)
		}
		e := rec.next(t, "notified")
		if e.obs != o || len(e.recs) != 1 || e.recs[0].Value.Text() != v || e.recs[0].Path != lwm2m.MustParsePath("/3303/0/5700") {
			t.Fatalf("notification %d: %+v", i, e)
		}
	}
	// An older sequence number (RFC 7641 §3.4, reordered) is delivered
	// too: it is history, not a duplicate (TestStaleNotificationStored).
	if err := d.notify(coap.Confirmable, 1, "0", lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	if e := rec.next(t, "notified"); e.recs[0].Value.Text() != "0" {
		t.Fatalf("stale notification: %+v", e)
	}
	// The handler cannot take a CON notification: it is not acknowledged
	// (no 5.03, no RST), the device retransmits it, and the
	// retransmission is delivered although its sequence number is not new.
	rec.mu.Lock()
	rec.refuseN = 1
	rec.mu.Unlock()
	if err := d.notify(coap.Confirmable, 10, "30", lwm2m.FormatText); err != nil {
		t.Fatalf("refused once, then retransmitted: %v", err)
	}
	if e := rec.next(t, "notified"); e.recs[0].Value.Text() != "30" {
		t.Fatalf("retransmission: %+v", e)
	}
	rec.mu.Lock()
	refusals := rec.refusals
	rec.mu.Unlock()
	if refusals != 1 {
		t.Fatalf("refusals %d, want 1", refusals)
	}
	// Refused for good: the device gives up after MAX_RETRANSMIT, never
	// having been told the values were received.
	rec.mu.Lock()
	rec.overload = errors.New("queue full")
	rec.mu.Unlock()
	if err := d.notify(coap.Confirmable, 13, "40", lwm2m.FormatText); !errors.Is(err, coap.ErrTimeout) {
		t.Fatalf("overloaded: %v, want a timeout", err)
	}
	rec.mu.Lock()
	rec.overload = nil
	rec.mu.Unlock()
	// An undecodable payload is acknowledged and counted, not delivered.
	if err := d.notify(coap.Confirmable, 14, "\xff", lwm2m.FormatSenMLCBOR); err != nil {
		t.Fatal(err)
	}
	if err := d.notify(coap.Confirmable, 15, "31", lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	if e := rec.next(t, "notified"); e.recs[0].Value.Text() != "31" {
		t.Fatalf("after overload: %+v", e)
	}
	st := s.Stats()
	// 5 delivered (one stale); dropped: one refusal, the refused tries
	// of "40" (sent once and retransmitted MaxRetransmit times), one
	// undecodable.
	drops := uint64(1 + 1 + dcc.MaxRetransmit + 1)
	if st.Notifications != 5 || st.NotificationDrops != drops || st.CoAP.StaleNotifications != 1 || st.Observations != 1 {
		t.Fatalf("%+v", st)
	}
	// Proactive cancel: GET with Observe=1 and the same token.
	if err := s.CancelObservation(ctx, o, true); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	last := d.got[len(d.got)-1]
	cancels := d.cancels
	d.mu.Unlock()
	if v, _ := last.Observe(); v != 1 || cancels != 1 || fmt.Sprintf("%x", last.Token) != o.ID {
		t.Fatalf("cancel request %v", last)
	}
	if len(s.Observations("dev")) != 0 {
		t.Fatal("still listed")
	}
	if err := d.notify(coap.Confirmable, 13, "1", lwm2m.FormatText); !errors.Is(err, coap.ErrReset) {
		t.Fatalf("after proactive cancel: %v", err)
	}
	// Reactive cancel: the next notification gets RST.
	o2, _, err := s.Observe(ctx, "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CancelObservation(ctx, o2, false); err != nil {
		t.Fatal(err)
	}
	if err := d.notify(coap.Confirmable, 2, "1", lwm2m.FormatText); !errors.Is(err, coap.ErrReset) {
		t.Fatalf("after reactive cancel: %v", err)
	}
	// The device ends an observation with a 4.04 notification.
	o3, _, err := s.Observe(ctx, "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	tok, peer := d.obsTok, d.obsPeer
	d.mu.Unlock()
	gone := coap.NewResponse(coap.NotFound)
	gone.SetObserve(50)
	if err := d.ep.Notify(ctx, peer, tok, gone); err != nil {
		t.Fatal(err)
	}
	if len(s.Observations("dev")) != 0 || o3.c.Active() {
		t.Fatal("observation survived a 4.04 notification")
	}
	// Observing something the device does not have.
	if _, _, err := s.Observe(ctx, "dev", lwm2m.MustParsePath("/9/9/9"), lwm2m.FormatText); !errors.Is(err, ErrNotFound) {
		t.Fatalf("observe missing: %v", err)
	}
}

func TestObserveComposite(t *testing.T) {
	s, rec, d := registered(t, testConfig())
	paths := []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700"), lwm2m.MustParsePath("/3/0/0")}
	o, recs, err := s.ObserveComposite(ctxT(t), "dev", paths, lwm2m.FormatSenMLJSON)
	if err != nil || len(recs) != 2 || !o.Composite {
		t.Fatalf("%+v %v %v", o, recs, err)
	}
	d.mu.Lock()
	req := d.obsReq
	d.mu.Unlock()
	if req.Code != coap.FETCH {
		t.Fatalf("observe-composite sent %s", req.Code)
	}
	payload := `[{"bn":"/3303/0/","n":"5700","v":25.5,"t":1700000000},{"n":"5700","v":26,"t":1700000060}]`
	if err := d.notify(coap.NonConfirmable, 5, payload, lwm2m.FormatSenMLJSON); err != nil {
		t.Fatal(err)
	}
	e := rec.next(t, "notified")
	if e.obs != o || len(e.recs) != 2 || !e.recs[1].Time.Equal(time.Unix(1700000060, 0)) {
		t.Fatalf("%+v", e.recs)
	}
	// Proactive cancel repeats the FETCH with its path list.
	if err := s.CancelObservation(ctxT(t), o, true); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	last := d.got[len(d.got)-1]
	d.mu.Unlock()
	if v, _ := last.Observe(); last.Code != coap.FETCH || v != 1 || !bytes.Equal(last.Payload, req.Payload) {
		t.Fatalf("cancel %v", last)
	}
}

func TestSend(t *testing.T) {
	s, rec, d := registered(t, testConfig())
	payload := `[{"bn":"/3303/0/","n":"5700","v":20.25,"t":1700000000},{"n":"5700","v":21,"t":1700000010}]`
	cf := coap.Option{ID: coap.ContentFormat, Value: coap.EncodeUint(uint32(lwm2m.FormatSenMLJSON))}
	if resp := d.req(coap.POST, "/dp", nil, []byte(payload), cf); resp.Code != coap.Changed {
		t.Fatalf("%s %s", resp.Code, resp.Payload)
	}
	e := rec.next(t, "sent")
	if e.reg.Endpoint != "dev" || len(e.recs) != 2 || !e.recs[0].Time.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("%+v", e)
	}
	// Empty tokens are accepted (Transport §6.4.3); coap.Endpoint always
	// sets one, so a bare socket registers and sends.
	raw := newRawClient(t, d.server.Addr.String())
	reg := &coap.Message{Token: []byte{1}, Code: coap.POST, Payload: []byte(links)}
	reg.SetPath("/rd")
	reg.AddQuery("ep=raw")
	if got := raw.roundTrip(reg); got.Code != coap.Created {
		t.Fatalf("raw register: %s", got.Code)
	}
	rec.next(t, "registered")
	m := &coap.Message{Code: coap.POST, Payload: []byte(payload)}
	m.SetPath("/dp")
	m.Options = append(m.Options, cf)
	if got := raw.roundTrip(m); got.Code != coap.Changed || len(got.Token) != 0 {
		t.Fatalf("empty token: %s %x", got.Code, got.Token)
	}
	if e := rec.next(t, "sent"); e.reg.Endpoint != "raw" {
		t.Fatalf("%+v", e)
	}
	for _, c := range []struct {
		name    string
		payload string
		opts    []coap.Option
		want    coap.Code
	}{
		{"no content format", payload, nil, coap.BadRequest},
		{"text", "1", []coap.Option{{ID: coap.ContentFormat, Value: []byte{}}}, coap.UnsupportedContentFormat},
		{"tlv", "1", []coap.Option{{ID: coap.ContentFormat, Value: coap.EncodeUint(11542)}}, coap.UnsupportedContentFormat},
		{"broken json", "[{", []coap.Option{cf}, coap.BadRequest},
	} {
		if resp := d.req(coap.POST, "/dp", nil, []byte(c.payload), c.opts...); resp.Code != c.want {
			t.Fatalf("%s: %s %s", c.name, resp.Code, resp.Payload)
		}
	}
	rec.mu.Lock()
	rec.overload = errors.New("full")
	rec.mu.Unlock()
	if resp := d.req(coap.POST, "/dp", nil, []byte(payload), cf); resp.Code != coap.ServiceUnavailable {
		t.Fatalf("overloaded: %s", resp.Code)
	}
	// A handler that cannot take the payload in any case says why.
	for _, c := range []struct {
		err  error
		want coap.Code
	}{
		{fmt.Errorf("LogData of 2000000 bytes: %w", ErrTooLarge), coap.RequestEntityTooLarge},
		{fmt.Errorf("nonsense: %w", ErrBadRequest), coap.BadRequest},
	} {
		rec.mu.Lock()
		rec.overload = c.err
		rec.mu.Unlock()
		resp := d.req(coap.POST, "/dp", nil, []byte(payload), cf)
		if resp.Code != c.want || !strings.Contains(string(resp.Payload), c.err.Error()) {
			t.Fatalf("%v: %s %q", c.err, resp.Code, resp.Payload)
		}
	}
	rec.mu.Lock()
	rec.overload = errors.New("full")
	rec.mu.Unlock()
	// A peer that is not registered.
	other := newDevice(t, d.server.Addr.String())
	if resp := other.req(coap.POST, "/dp", nil, []byte(payload), cf); resp.Code != coap.NotFound {
		t.Fatalf("unregistered: %s", resp.Code)
	}
	if st := s.Stats(); st.Sends != 2 || st.SendDrops < 2 {
		t.Fatalf("%+v", st)
	}
}

// rawClient speaks CoAP over a bare socket, for messages coap.Endpoint
// would not produce (empty tokens, fixed message ids).
type rawClient struct {
	t   testing.TB
	c   *net.UDPConn
	mid uint16
}

func newRawClient(t testing.TB, addr string) *rawClient {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, mid: 100}
}

// roundTrip sends m as CON and returns the piggybacked response.
func (r *rawClient) roundTrip(m *coap.Message) *coap.Message {
	r.t.Helper()
	r.mid++
	m.Type, m.MessageID = coap.Confirmable, r.mid
	b, err := m.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
	buf := make([]byte, 2048)
	for {
		r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := r.c.Read(buf)
		if err != nil {
			r.t.Fatal(err)
		}
		resp, err := coap.Unmarshal(append([]byte(nil), buf[:n]...))
		if err == nil && resp.Type == coap.Acknowledgement && resp.MessageID == r.mid {
			return resp
		}
	}
}
