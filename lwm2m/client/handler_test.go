package client

import (
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// TestHandlerCodes drives every operation and every refusal path through
// ServeCoAP and checks the CoAP code (Core §6.3 response codes).
func TestHandlerCodes(t *testing.T) {
	c, _ := newTestClient(t, Version11)
	text := func(m *coap.Message, s string) *coap.Message {
		m.SetContentFormat(uint16(lwm2m.FormatText))
		m.Payload = []byte(s)
		return m
	}
	accept := func(m *coap.Message, f lwm2m.Format) *coap.Message { m.SetAccept(uint16(f)); return m }
	cf := func(m *coap.Message, f uint16, b []byte) *coap.Message {
		m.SetContentFormat(f)
		m.Payload = b
		return m
	}
	query := func(m *coap.Message, qs ...string) *coap.Message {
		for _, q := range qs {
			m.AddQuery(q)
		}
		return m
	}
	cases := []struct {
		name string
		m    *coap.Message
		want coap.Code
	}{
		{"read resource", req(coap.GET, "/3/0/0"), coap.Content},
		{"read instance", req(coap.GET, "/3/0"), coap.Content},
		{"read object", req(coap.GET, "/3303"), coap.Content},
		{"read resource text", accept(req(coap.GET, "/3303/0/5700"), lwm2m.FormatText), coap.Content},
		{"read resource instance", req(coap.GET, "/3/0/11/0"), coap.Content},
		{"read unknown object", req(coap.GET, "/9999"), coap.NotFound},
		{"read unknown instance", req(coap.GET, "/3303/7"), coap.NotFound},
		{"read unknown resource", req(coap.GET, "/3/0/999"), coap.NotFound},
		{"read absent optional resource", req(coap.GET, "/3/0/2"), coap.NotFound},
		{"read resource instance of single resource", req(coap.GET, "/3/0/0/0"), coap.NotFound},
		{"read malformed path", req(coap.GET, "/3/x"), coap.NotFound},
		{"read root", req(coap.GET, "/"), coap.MethodNotAllowed},
		{"read executable", req(coap.GET, "/3/0/4"), coap.MethodNotAllowed},
		{"read security", req(coap.GET, "/0/0"), coap.Unauthorized},
		{"read instance as text", accept(req(coap.GET, "/3/0"), lwm2m.FormatText), coap.NotAcceptable},
		{"read with unknown accept", accept(req(coap.GET, "/3/0/0"), lwm2m.Format(9999)), coap.NotAcceptable},
		{"read string as opaque", accept(req(coap.GET, "/3/0/0"), lwm2m.FormatOpaque), coap.NotAcceptable},
		{"discover object", accept(req(coap.GET, "/3303"), lwm2m.FormatLinkFormat), coap.Content},
		{"discover unknown", accept(req(coap.GET, "/3303/9"), lwm2m.FormatLinkFormat), coap.NotFound},
		{"write utc offset", text(req(coap.PUT, "/3/0/14"), "+02:00"), coap.Changed},
		{"write read-only", text(req(coap.PUT, "/3/0/0"), "x"), coap.MethodNotAllowed},
		{"write unknown resource", text(req(coap.PUT, "/3/0/999"), "x"), coap.NotFound},
		{"write object", text(req(coap.PUT, "/3"), "x"), coap.MethodNotAllowed},
		{"write bad value", text(req(coap.PUT, "/1/0/1"), "many"), coap.BadRequest},
		{"write no format", func() *coap.Message { m := req(coap.PUT, "/1/0/1"); m.Payload = []byte("60"); return m }(), coap.BadRequest},
		{"write unsupported format", cf(req(coap.PUT, "/1/0/1"), 4711, []byte("60")), coap.UnsupportedContentFormat},
		{"write empty", req(coap.POST, "/1/0"), coap.BadRequest},
		{"write malformed tlv", cf(req(coap.PUT, "/1/0"), uint16(lwm2m.FormatTLV), []byte{0xff}), coap.BadRequest},
		{"write security", text(req(coap.PUT, "/0/0/0"), "coap://x"), coap.Unauthorized},
		{"execute reset min max", req(coap.POST, "/3303/0/5605"), coap.Changed},
		{"execute with args", text(req(coap.POST, "/3/0/4"), "0='a',1"), coap.Changed},
		{"execute bad args", text(req(coap.POST, "/3/0/4"), "x=1"), coap.BadRequest},
		{"execute readable", req(coap.POST, "/3/0/0"), coap.MethodNotAllowed},
		{"execute unknown", req(coap.POST, "/3/0/999"), coap.NotFound},
		{"post resource instance", req(coap.POST, "/3/0/11/0"), coap.MethodNotAllowed},
		{"write attributes", query(req(coap.PUT, "/3303/0/5700"), "pmin=1", "pmax=60", "gt=30", "lt=10", "st=0.5"), coap.Changed},
		{"write attributes unknown name", query(req(coap.PUT, "/3303/0/5700"), "foo=1"), coap.BadRequest},
		{"write attributes bad value", query(req(coap.PUT, "/3303/0/5700"), "pmin=-1"), coap.BadRequest},
		{"write attributes lt above gt", query(req(coap.PUT, "/3303/1/5700"), "gt=5", "lt=10"), coap.BadRequest},
		{"write attributes gt on string", query(req(coap.PUT, "/3/0/0"), "gt=5"), coap.BadRequest},
		{"write attributes gt on instance", query(req(coap.PUT, "/3303/0"), "gt=5"), coap.BadRequest},
		{"write attributes unknown path", query(req(coap.PUT, "/3303/9"), "pmin=5"), coap.NotFound},
		{"write attributes root", query(req(coap.PUT, "/"), "pmin=5"), coap.MethodNotAllowed},
		{"create temperature", req(coap.POST, "/3303"), coap.Created},
		{"create single-instance device", req(coap.POST, "/3"), coap.BadRequest},
		{"create unknown object", req(coap.POST, "/4242"), coap.NotFound},
		{"delete temperature", req(coap.DELETE, "/3303/1"), coap.Deleted},
		{"delete again", req(coap.DELETE, "/3303/1"), coap.NotFound},
		{"delete object", req(coap.DELETE, "/3303"), coap.MethodNotAllowed},
		{"delete device", req(coap.DELETE, "/3/0"), coap.MethodNotAllowed},
		{"delete security", req(coap.DELETE, "/0/0"), coap.Unauthorized},
		{"ipatch not root", cf(req(coap.IPATCH, "/3"), uint16(lwm2m.FormatSenMLJSON), []byte(`[]`)), coap.MethodNotAllowed},
		{"fetch without format", req(coap.FETCH, "/"), coap.BadRequest},
		{"fetch bad format", cf(req(coap.FETCH, "/"), uint16(lwm2m.FormatText), []byte("/3/0")), coap.UnsupportedContentFormat},
		{"patch method", req(coap.PATCH, "/3/0"), coap.MethodNotAllowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := serve(t, c, tc.m)
			if r.Code != tc.want {
				t.Fatalf("%s %s: got %s (%s), want %s", tc.m.Code, tc.m.Path(), r.Code, r.Payload, tc.want)
			}
			if !r.Code.IsSuccess() && len(r.Payload) == 0 {
				t.Fatalf("error response without a diagnostic")
			}
		})
	}
}

// TestReadDefaultFormats checks the Read format choice without Accept: 1.1
// answers SenML CBOR (like Zephyr), 1.0 answers TLV.
func TestReadDefaultFormats(t *testing.T) {
	for _, tc := range []struct {
		v    Version
		want lwm2m.Format
	}{{Version11, lwm2m.FormatSenMLCBOR}, {Version12, lwm2m.FormatSenMLCBOR}, {Version10, lwm2m.FormatTLV}} {
		c, _ := newTestClient(t, tc.v)
		for _, p := range []string{"/3/0", "/3303/0/5700"} {
			r := serve(t, c, req(coap.GET, p))
			f, _ := r.ContentFormat()
			if r.Code != coap.Content || lwm2m.Format(f) != tc.want {
				t.Fatalf("%s read %s: %s format %s, want %s", tc.v, p, r.Code, lwm2m.Format(f), tc.want)
			}
			recs, err := lwm2m.Decode(lwm2m.Format(f), lwm2m.MustParsePath(p), r.Payload, c.Tree().Registry())
			if err != nil {
				t.Fatalf("decode answer: %v", err)
			}
			if len(recs) == 0 {
				t.Fatalf("empty answer for %s", p)
			}
		}
	}
}

// TestReadValues checks what a read returns, decoded again.
func TestReadValues(t *testing.T) {
	c, _ := newTestClient(t, Version11)
	m := req(coap.GET, "/3303/0")
	m.SetAccept(uint16(lwm2m.FormatSenMLJSON))
	r := serve(t, c, m)
	recs, err := lwm2m.Decode(lwm2m.FormatSenMLJSON, lwm2m.MustParsePath("/3303/0"), r.Payload, c.Tree().Registry())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, rec := range recs {
		got[rec.Path.String()] = rec.Value.Text()
	}
	if got["/3303/0/5700"] != "21.5" || got["/3303/0/5701"] != "Cel" || len(got) != 2 {
		t.Fatalf("read /3303/0 = %v", got)
	}
}

// TestWriteThenRead writes through the handler and reads the value back.
func TestWriteThenRead(t *testing.T) {
	c, objs := newTestClient(t, Version11)
	m := req(coap.PUT, "/1/0/1")
	m.SetContentFormat(uint16(lwm2m.FormatText))
	m.Payload = []byte("120")
	if r := serve(t, c, m); r.Code != coap.Changed {
		t.Fatalf("write: %s %s", r.Code, r.Payload)
	}
	v, ok := objs[1].Get(lwm2m.MustParsePath("/1/0/1"))
	if !ok || v.Type() != lwm2m.TypeInteger || v.Int() != 120 {
		t.Fatalf("lifetime after write = %v", v)
	}
	// Partial update of an instance in SenML JSON.
	m = req(coap.POST, "/1/0")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = []byte(`[{"bn":"/1/0/","n":"2","v":5},{"n":"3","v":50}]`)
	if r := serve(t, c, m); r.Code != coap.Changed {
		t.Fatalf("partial update: %s %s", r.Code, r.Payload)
	}
	for p, want := range map[string]int64{"/1/0/2": 5, "/1/0/3": 50, "/1/0/1": 120} {
		if v, _ := objs[1].Get(lwm2m.MustParsePath(p)); v.Int() != want {
			t.Fatalf("%s = %v, want %d", p, v, want)
		}
	}
	// A write naming a read-only resource changes nothing.
	m = req(coap.POST, "/1/0")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = []byte(`[{"bn":"/1/0/","n":"2","v":7},{"n":"0","v":9}]`)
	if r := serve(t, c, m); r.Code != coap.MethodNotAllowed {
		t.Fatalf("write read-only inside instance: %s", r.Code)
	}
	if v, _ := objs[1].Get(lwm2m.MustParsePath("/1/0/2")); v.Int() != 5 {
		t.Fatalf("refused write changed /1/0/2 to %v", v)
	}
}

// TestCreateDelete creates an instance with values and deletes it.
func TestCreateDelete(t *testing.T) {
	c, objs := newTestClient(t, Version11)
	m := req(coap.POST, "/3303")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = []byte(`[{"bn":"/3303/5/","n":"5700","v":1.5}]`)
	r := serve(t, c, m)
	if r.Code != coap.Created {
		t.Fatalf("create: %s %s", r.Code, r.Payload)
	}
	if loc := strings.Join(r.LocationPath(), "/"); loc != "3303/5" {
		t.Fatalf("Location-Path %q", loc)
	}
	if v, ok := objs[3303].Get(lwm2m.MustParsePath("/3303/5/5700")); !ok || v.Float() != 1.5 {
		t.Fatalf("created value %v", v)
	}
	if r := serve(t, c, m); r.Code != coap.BadRequest {
		t.Fatalf("create existing instance: %s", r.Code)
	}
	if r := serve(t, c, req(coap.DELETE, "/3303/5")); r.Code != coap.Deleted {
		t.Fatalf("delete: %s", r.Code)
	}
	if _, ok := objs[3303].Get(lwm2m.MustParsePath("/3303/5/5700")); ok {
		t.Fatal("instance still there")
	}
}

// TestExecuteRuns checks that an execute reaches the object's function with
// its arguments.
func TestExecuteRuns(t *testing.T) {
	c, objs := newTestClient(t, Version11)
	var got string
	objs[3].OnExecute(4, func(inst uint16, args string) error { got = args; return nil })
	m := req(coap.POST, "/3/0/4")
	m.Payload = []byte("1='now'")
	if r := serve(t, c, m); r.Code != coap.Changed {
		t.Fatalf("execute: %s", r.Code)
	}
	if got != "1='now'" {
		t.Fatalf("execute args %q", got)
	}
}

// TestDiscover checks link-format answers with versions, dim and attributes.
func TestDiscover(t *testing.T) {
	c, _ := newTestClient(t, Version11)
	wa := req(coap.PUT, "/3303/0/5700")
	wa.AddQuery("pmin=10")
	wa.AddQuery("st=0.5")
	serve(t, c, wa)
	wo := req(coap.PUT, "/3303")
	wo.AddQuery("pmax=300")
	serve(t, c, wo)

	disc := func(p string) string {
		m := req(coap.GET, p)
		m.SetAccept(uint16(lwm2m.FormatLinkFormat))
		r := serve(t, c, m)
		if r.Code != coap.Content {
			t.Fatalf("discover %s: %s", p, r.Code)
		}
		return string(r.Payload)
	}
	got := disc("/3303")
	want := "</3303>;ver=1.1;pmax=300,</3303/0>,</3303/0/5605>,</3303/0/5700>;pmin=10;st=0.5,</3303/0/5701>,</3303/1>,</3303/1/5605>,</3303/1/5700>,</3303/1/5701>"
	if got != want {
		t.Fatalf("discover /3303:\n got %s\nwant %s", got, want)
	}
	if got := disc("/3303/0/5700"); got != "</3303/0/5700>;pmin=10;pmax=300;st=0.5" {
		t.Fatalf("discover resource: %s", got)
	}
	if got := disc("/3/0/11"); got != "</3/0/11>;dim=1" {
		t.Fatalf("discover multiple resource: %s", got)
	}
}

// TestRegistrationPayload checks the Register object list (Core §6.2.1):
// no Security object, versions, root with the preferred format.
func TestRegistrationPayload(t *testing.T) {
	c, _ := newTestClient(t, Version11)
	got := string(c.registrationLinks())
	want := `</>;rt="oma.lwm2m";ct=112,</1>;ver=1.2,</1/0>,</3>;ver=1.2,</3/0>,</20>;ver=2.1,</3303>;ver=1.1,</3303/0>,</3303/1>`
	if got != want {
		t.Fatalf("registration links:\n got %s\nwant %s", got, want)
	}
	q := strings.Join(c.registerQuery(), "&")
	if q != "ep=unit-1&lt=86400&lwm2m=1.1&b=U" {
		t.Fatalf("query %s", q)
	}
	c.cfg.QueueMode = true
	if q := strings.Join(c.registerQuery(), "&"); q != "ep=unit-1&lt=86400&lwm2m=1.1&b=U&Q" {
		t.Fatalf("1.1 queue-mode query %s", q)
	}
	c.cfg.Version = Version10
	if q := strings.Join(c.registerQuery(), "&"); q != "ep=unit-1&lt=86400&lwm2m=1.0&b=UQ" {
		t.Fatalf("1.0 queue-mode query %s", q)
	}
}

// TestComposite reads and writes several paths at once (Core §6.3.8/9).
func TestComposite(t *testing.T) {
	c, objs := newTestClient(t, Version11)
	paths, err := lwm2m.EncodePaths(lwm2m.FormatSenMLJSON, []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700"), lwm2m.MustParsePath("/3/0/9"), lwm2m.MustParsePath("/3303/9")})
	must(t, err)
	m := req(coap.FETCH, "/")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = paths
	r := serve(t, c, m)
	if r.Code != coap.Content {
		t.Fatalf("read-composite: %s %s", r.Code, r.Payload)
	}
	f, _ := r.ContentFormat()
	recs, err := lwm2m.Decode(lwm2m.Format(f), lwm2m.Path{}, r.Payload, c.Tree().Registry())
	must(t, err)
	if len(recs) != 2 {
		t.Fatalf("read-composite records %v", recs)
	}

	m = req(coap.IPATCH, "/")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = []byte(`[{"n":"/1/0/1","v":600},{"n":"/3/0/14","vs":"-05:00"}]`)
	if r := serve(t, c, m); r.Code != coap.Changed {
		t.Fatalf("write-composite: %s %s", r.Code, r.Payload)
	}
	if v, _ := objs[1].Get(lwm2m.MustParsePath("/1/0/1")); v.Int() != 600 {
		t.Fatalf("lifetime %v", v)
	}
	// One refused value refuses all.
	m.Payload = []byte(`[{"n":"/1/0/1","v":700},{"n":"/3/0/0","vs":"evil"}]`)
	if r := serve(t, c, m); r.Code != coap.MethodNotAllowed {
		t.Fatalf("write-composite with read-only value: %s", r.Code)
	}
	if v, _ := objs[1].Get(lwm2m.MustParsePath("/1/0/1")); v.Int() != 600 {
		t.Fatalf("refused write-composite changed lifetime to %v", v)
	}
	m.Payload = []byte(`[{"n":"/1/0/1","v":700},{"n":"/3/0/999","vs":"x"}]`)
	if r := serve(t, c, m); r.Code != coap.NotFound {
		t.Fatalf("write-composite with unknown resource: %s", r.Code)
	}
}

// TestBootstrapWrite checks the bootstrap hook: Security is writable and
// instances are created.
func TestBootstrapWrite(t *testing.T) {
	c, objs := newTestClient(t, Version11)
	err := c.Tree().BootstrapWrite(lwm2m.MustParsePath("/0/1"), []lwm2m.Record{
		{Path: lwm2m.MustParsePath("/0/1/0"), Value: lwm2m.String("coaps://127.0.0.1:5684")},
		{Path: lwm2m.MustParsePath("/0/1/1"), Value: lwm2m.Bool(false)},
	})
	must(t, err)
	if v, ok := objs[0].Get(lwm2m.MustParsePath("/0/1/0")); !ok || v.Str() != "coaps://127.0.0.1:5684" {
		t.Fatalf("security URI %v", v)
	}
	must(t, c.Tree().BootstrapDelete(lwm2m.MustParsePath("/0")))
	if len(objs[0].Instances()) != 0 {
		t.Fatal("bootstrap delete left security instances")
	}
}
