package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

var cfLinks = coap.Option{ID: coap.ContentFormat, Value: []byte{40}}

func TestRegisterUpdateDeregister(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	d := newDevice(t, addr)
	resp := d.register("node-1", "sms=+4912345", "Q")
	loc := resp.LocationPath()
	if len(loc) != 2 || loc[0] != "rd" || loc[1] == "" {
		t.Fatalf("Location-Path %q", loc)
	}
	e := rec.next(t, "registered")
	r := e.reg
	if r.Endpoint != "node-1" || r.Lifetime != 300*time.Second || r.LwM2MVersion != "1.1" || r.Binding != "U" ||
		!r.QueueMode || r.SMSNumber != "+4912345" || r.ID != loc[1] || r.RootPath != "/" {
		t.Fatalf("registration %+v", r)
	}
	if len(r.Objects) != 3 || r.Objects[2].ID != 3303 || r.Objects[2].Version != "1.1" || len(r.ContentFormats) != 3 {
		t.Fatalf("objects %+v formats %v", r.Objects, r.ContentFormats)
	}
	if !r.ExpiresAt.Equal(r.LastUpdate.Add(300*time.Second)) || r.Peer.Addr.String() != d.ep.LocalAddr().String() {
		t.Fatalf("times/peer %+v", r)
	}
	// Empty update, then one with a new lifetime and object list.
	if resp := d.req(coap.POST, d.loc, nil, nil); resp.Code != coap.Changed {
		t.Fatalf("update: %s", resp.Code)
	}
	rec.next(t, "updated")
	if resp := d.req(coap.POST, d.loc, []string{"lt=600", "b=UQ"}, []byte("</3/0>,</5/0>"), cfLinks); resp.Code != coap.Changed {
		t.Fatalf("update: %s %s", resp.Code, resp.Payload)
	}
	u := rec.next(t, "updated").reg
	if u.Lifetime != 600*time.Second || u.Binding != "UQ" || len(u.Objects) != 2 || u.Objects[1].ID != 5 || !u.LastUpdate.After(r.LastUpdate) {
		t.Fatalf("updated %+v", u)
	}
	if got, ok := s.Registration("node-1"); !ok || got.Lifetime != 600*time.Second {
		t.Fatalf("Registration: %+v %v", got, ok)
	}
	if resp := d.req(coap.DELETE, d.loc, nil, nil); resp.Code != coap.Deleted {
		t.Fatalf("deregister: %s", resp.Code)
	}
	if e := rec.next(t, "deregistered"); e.reason != ReasonExplicit || e.reg.ID != r.ID {
		t.Fatalf("deregistered %+v", e)
	}
	if _, ok := s.Registration("node-1"); ok {
		t.Fatal("still registered")
	}
	st := s.Stats()
	if st.Registrations != 1 || st.Updates != 2 || st.Deregistrations != 1 || st.Registered != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRegisterDefaults(t *testing.T) {
	rec := newRecorder()
	_, addr := testServer(t, testConfig(), rec)
	d := newDevice(t, addr)
	// A 1.0 client: no lt, no lwm2m, b=UQ for queue mode, alternate root
	// path, no Content-Format.
	resp := d.req(coap.POST, "/rd", []string{"ep=old", "b=UQ"}, []byte(`</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>,</lwm2m/1/0>`))
	if resp.Code != coap.Created {
		t.Fatalf("%s %s", resp.Code, resp.Payload)
	}
	r := rec.next(t, "registered").reg
	if r.Lifetime != 86400*time.Second || r.LwM2MVersion != "1.0" || !r.QueueMode || r.RootPath != "/lwm2m" || len(r.Objects) != 2 {
		t.Fatalf("%+v", r)
	}
}

func TestRegisterRefusals(t *testing.T) {
	rec := newRecorder()
	cfg := testConfig()
	cfg.MaxLinksSize = 2000
	s, addr := testServer(t, cfg, rec)
	d := newDevice(t, addr)
	big := []byte(strings.Repeat("</3303/0>,", 300))
	cases := []struct {
		name    string
		code    coap.Code
		path    string
		method  coap.Code
		queries []string
		payload []byte
		opts    []coap.Option
		want    coap.Code
	}{
		{name: "missing ep", method: coap.POST, path: "/rd", queries: []string{"lt=60"}, payload: []byte(links), want: coap.BadRequest},
		{name: "empty ep", method: coap.POST, path: "/rd", queries: []string{"ep="}, want: coap.BadRequest},
		{name: "bad lt", method: coap.POST, path: "/rd", queries: []string{"ep=a", "lt=soon"}, want: coap.BadRequest},
		{name: "zero lt", method: coap.POST, path: "/rd", queries: []string{"ep=a", "lt=0"}, want: coap.BadRequest},
		{name: "negative lt", method: coap.POST, path: "/rd", queries: []string{"ep=a", "lt=-5"}, want: coap.BadRequest},
		{name: "bad version", method: coap.POST, path: "/rd", queries: []string{"ep=a", "lwm2m=2.0"}, want: coap.BadRequest},
		{name: "unknown binding", method: coap.POST, path: "/rd", queries: []string{"ep=a", "b=X"}, want: coap.BadRequest},
		{name: "repeated binding letter", method: coap.POST, path: "/rd", queries: []string{"ep=a", "b=UU"}, want: coap.BadRequest},
		{name: "repeated parameter", method: coap.POST, path: "/rd", queries: []string{"ep=a", "ep=b"}, want: coap.BadRequest},
		{name: "Q with value", method: coap.POST, path: "/rd", queries: []string{"ep=a", "Q=1"}, want: coap.BadRequest},
		{name: "bad link-format", method: coap.POST, path: "/rd", queries: []string{"ep=a"}, payload: []byte("</3/0"), want: coap.BadRequest},
		{name: "bad ver", method: coap.POST, path: "/rd", queries: []string{"ep=a"}, payload: []byte("</3>;ver=x"), want: coap.BadRequest},
		{name: "json payload", method: coap.POST, path: "/rd", queries: []string{"ep=a"}, payload: []byte("{}"), opts: []coap.Option{{ID: coap.ContentFormat, Value: []byte{50}}}, want: coap.UnsupportedContentFormat},
		{name: "accept json", method: coap.POST, path: "/rd", queries: []string{"ep=a"}, opts: []coap.Option{{ID: coap.Accept, Value: []byte{110}}}, want: coap.NotAcceptable},
		{name: "too large", method: coap.POST, path: "/rd", queries: []string{"ep=a"}, payload: big, want: coap.RequestEntityTooLarge},
		{name: "unknown critical option", method: coap.POST, path: "/rd", queries: []string{"ep=a"}, opts: []coap.Option{{ID: 2049, Value: []byte{1}}}, want: coap.BadOption},
		{name: "GET /rd", method: coap.GET, path: "/rd", want: coap.MethodNotAllowed},
		{name: "PUT /rd/x", method: coap.PUT, path: "/rd/x", want: coap.MethodNotAllowed},
		{name: "GET /dp", method: coap.GET, path: "/dp", want: coap.MethodNotAllowed},
		{name: "update unknown id", method: coap.POST, path: "/rd/nope", want: coap.NotFound},
		{name: "deregister unknown id", method: coap.DELETE, path: "/rd/nope", want: coap.NotFound},
		{name: "unknown path", method: coap.GET, path: "/xyz", want: coap.NotFound},
		{name: "ep in update", method: coap.POST, path: "/rd/nope", queries: []string{"ep=x"}, want: coap.NotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := d.req(c.method, c.path, c.queries, c.payload, c.opts...)
			if resp.Code != c.want {
				t.Fatalf("got %s (%s), want %s", resp.Code, resp.Payload, c.want)
			}
			if c.want != coap.MethodNotAllowed && c.want != coap.NotFound && c.want != coap.BadOption && len(resp.Payload) == 0 {
				t.Fatalf("no diagnostic payload with %s", resp.Code)
			}
		})
	}
	// The handler refuses: 4.03 and 4.00 with its message.
	for _, c := range []struct {
		err  error
		want coap.Code
	}{
		{fmt.Errorf("identity mismatch: %w", ErrForbidden), coap.Forbidden},
		{fmt.Errorf("bad name: %w", ErrBadRequest), coap.BadRequest},
		{errors.New("database down"), coap.InternalServerError},
	} {
		rec.mu.Lock()
		rec.refuse = c.err
		rec.mu.Unlock()
		resp := d.req(coap.POST, "/rd", []string{"ep=refused"}, []byte(links), cfLinks)
		if resp.Code != c.want || !strings.Contains(string(resp.Payload), c.err.Error()) {
			t.Fatalf("refusal: %s %q, want %s", resp.Code, resp.Payload, c.want)
		}
	}
	if _, ok := s.Registration("refused"); ok {
		t.Fatal("refused endpoint registered")
	}
	if n := s.Stats().Refused; n < 15 {
		t.Fatalf("refused count %d", n)
	}
	// Update with bad parameters on a real registration.
	rec.mu.Lock()
	rec.refuse = nil
	rec.mu.Unlock()
	d.register("ok")
	for _, q := range [][]string{{"lt=x"}, {"b=Z"}, {"ep=other"}, {"lwm2m=1.1"}} {
		if resp := d.req(coap.POST, d.loc, q, nil); resp.Code != coap.BadRequest {
			t.Fatalf("update %v: %s", q, resp.Code)
		}
	}
	if resp := d.req(coap.POST, d.loc, nil, []byte("<bad")); resp.Code != coap.BadRequest {
		t.Fatalf("update bad links: %s", resp.Code)
	}
}

// TestOversizedDatagram: a request larger than the maximum message size
// gets 4.13 with Size1 (RFC 7959 §2.9.3).
func TestOversizedDatagram(t *testing.T) {
	_, addr := testServer(t, testConfig(), newRecorder())
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: 9, Token: []byte{7}, Payload: bytes.Repeat([]byte("x"), 3000)}
	m.SetPath("/rd")
	m.AddQuery("ep=big")
	b, _ := m.Marshal()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	r, err := coap.Unmarshal(buf[:n])
	if err != nil || r.Code != coap.RequestEntityTooLarge || r.MessageID != 9 || !r.HasOption(coap.Size1) {
		t.Fatalf("%v %v", r, err)
	}
}

// TestRegisterBlock1: a large object list arrives in Block1 blocks.
func TestRegisterBlock1(t *testing.T) {
	rec := newRecorder()
	_, addr := testServer(t, testConfig(), rec)
	d := newDevice(t, addr)
	var b strings.Builder
	b.WriteString(`</>;rt="oma.lwm2m"`)
	for i := 0; i < 400; i++ {
		fmt.Fprintf(&b, ",</3303/%d>", i)
	}
	resp := d.req(coap.POST, "/rd", []string{"ep=blocky"}, []byte(b.String()), cfLinks)
	if resp.Code != coap.Created {
		t.Fatalf("%s %s", resp.Code, resp.Payload)
	}
	r := rec.next(t, "registered").reg
	if len(r.Objects) != 1 || len(r.Objects[0].Instances) != 400 {
		t.Fatalf("%+v", r.Objects)
	}
}

func TestReregisterReplaces(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	d1 := newDevice(t, addr)
	d1.register("same")
	first := rec.next(t, "registered").reg
	o, _, err := s.Observe(ctxT(t), "same", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone)
	if err != nil {
		t.Fatal(err)
	}
	// The device reboots and registers again from another port.
	d2 := newDevice(t, addr)
	d2.register("same")
	second := rec.next(t, "registered").reg
	e := rec.next(t, "deregistered")
	if e.reason != ReasonReplaced || e.reg.ID != first.ID || second.ID == first.ID {
		t.Fatalf("replaced: %+v", e)
	}
	if len(s.Observations("same")) != 0 || o.c.Active() {
		t.Fatal("old observation survived")
	}
	// The old token is now unknown: a notification gets RST.
	if err := d1.notify(coap.Confirmable, 5, "1", lwm2m.FormatText); !errors.Is(err, coap.ErrReset) {
		t.Fatalf("notify on replaced observation: %v", err)
	}
	// The old location is gone.
	if resp := d1.req(coap.POST, d1.loc, nil, nil); resp.Code != coap.NotFound {
		t.Fatalf("update old location: %s", resp.Code)
	}
	if st := s.Stats(); st.Replaced != 1 || st.Registered != 1 {
		t.Fatalf("%+v", st)
	}
}

func TestNATRebinding(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	d1 := newDevice(t, addr)
	d1.register("nat")
	rec.next(t, "registered")
	// The NAT gives the device a new port: Update from there.
	d2 := newDevice(t, addr)
	d2.loc = d1.loc
	if resp := d2.req(coap.POST, d2.loc, nil, nil); resp.Code != coap.Changed {
		t.Fatalf("update from new port: %s", resp.Code)
	}
	u := rec.next(t, "updated").reg
	if u.Peer.Addr.String() != d2.ep.LocalAddr().String() {
		t.Fatalf("peer not rebound: %v", u.Peer.Addr)
	}
	// Requests now go to the new address.
	recs, err := s.Read(ctxT(t), "nat", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText)
	if err != nil || len(recs) != 1 {
		t.Fatalf("read after rebinding: %v %v", recs, err)
	}
	d2.mu.Lock()
	n1 := len(d2.got)
	d2.mu.Unlock()
	if n1 != 1 {
		t.Fatalf("new address got %d requests", n1)
	}
	// De-register from yet another port.
	d3 := newDevice(t, addr)
	if resp := d3.req(coap.DELETE, d1.loc, nil, nil); resp.Code != coap.Deleted {
		t.Fatalf("deregister from new port: %s", resp.Code)
	}
	rec.next(t, "deregistered")
}

func TestExpiry(t *testing.T) {
	rec := newRecorder()
	cfg := testConfig()
	cfg.ExpiryGrace = 0
	s, addr := testServer(t, cfg, rec)
	d := newDevice(t, addr)
	resp := d.req(coap.POST, "/rd", []string{"ep=short", "lt=1"}, []byte(links), cfLinks)
	if resp.Code != coap.Created {
		t.Fatal(resp.Code)
	}
	rec.next(t, "registered")
	e := rec.next(t, "deregistered")
	if e.reason != ReasonExpired || e.reg.Endpoint != "short" {
		t.Fatalf("%+v", e)
	}
	if _, ok := s.Registration("short"); ok || s.Stats().Expirations != 1 {
		t.Fatal("not expired")
	}
	if _, err := s.Read(ctxT(t), "short", lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatNone); !errors.Is(err, ErrNotRegistered) {
		t.Fatalf("read after expiry: %v", err)
	}
}

// TestDuplicateMessageID: a retransmitted Register is answered with the
// cached response, and registers once (RFC 7252 §4.5).
func TestDuplicateMessageID(t *testing.T) {
	rec := newRecorder()
	cfg := testConfig()
	// Piggybacked answers only: a Register slower than ProcessingDelay
	// would otherwise be answered with an empty ACK and a separate
	// response, and the replies compared below would differ.
	cfg.CoAP.ProcessingDelay = 0
	s, addr := testServer(t, cfg, rec)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: 4242, Token: []byte{1, 2, 3}, Payload: []byte(links)}
	m.SetPath("/rd")
	m.AddQuery("ep=dup")
	b, _ := m.Marshal()
	var replies [][]byte
	buf := make([]byte, 2048)
	for i := 0; i < 3; i++ {
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, append([]byte(nil), buf[:n]...))
	}
	if !bytes.Equal(replies[0], replies[1]) || !bytes.Equal(replies[1], replies[2]) {
		t.Fatalf("replies differ: %x", replies)
	}
	r, _ := coap.Unmarshal(replies[0])
	if r.Code != coap.Created {
		t.Fatal(r.Code)
	}
	rec.next(t, "registered")
	st := s.Stats()
	if st.Registrations != 1 || st.CoAP.Duplicates != 2 {
		t.Fatalf("%+v", st)
	}
}

// TestExpiryIgnoresWallClockSteps: a registration expires by the
// monotonic clock, so setting the wall clock forward (or back) neither
// expires a healthy registration early nor keeps a dead one. The expiry
// timer is a time.AfterFunc, and the re-check in expire is time.Until of
// ExpiresAt: both are monotonic only while ExpiresAt keeps the monotonic
// reading that time.Now gives it. Stripping it (UTC, Round(0), a value
// read back from storage) would make expiry follow the wall clock; this
// test keeps that from happening unnoticed.
func TestExpiryIgnoresWallClockSteps(t *testing.T) {
	rec := newRecorder()
	s, addr := testServer(t, testConfig(), rec)
	d := newDevice(t, addr)
	d.register("steady")
	rec.next(t, "registered")
	if resp := d.req(coap.POST, d.loc, []string{"lt=3600"}, nil); resp.Code != coap.Changed {
		t.Fatalf("update: %s", resp.Code)
	}
	rec.next(t, "updated")
	s.mu.Lock()
	reg := s.byEP["steady"]
	times := map[string]time.Time{"RegisteredAt": reg.snap.RegisteredAt, "LastUpdate": reg.snap.LastUpdate, "ExpiresAt": reg.snap.ExpiresAt}
	s.mu.Unlock()
	for name, v := range times {
		// time.Time.String shows the monotonic reading as "m=±…".
		if !strings.Contains(v.String(), " m=") {
			t.Errorf("%s = %v has no monotonic reading: expiry would follow wall-clock steps", name, v)
		}
	}
}
