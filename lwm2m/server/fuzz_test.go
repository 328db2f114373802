package server

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// FuzzRegisterQuery: registration query parsing never panics, refuses with
// ErrBadRequest only, and what it accepts is consistent.
func FuzzRegisterQuery(f *testing.F) {
	for _, q := range []string{
		"ep=node1&lt=300&lwm2m=1.1&b=U",
		"ep=urn:imei:123456789012345&b=UQ",
		"ep=a&Q&sms=+491234",
		"ep=&lt=0",
		"ep=a&ep=b",
		"lt=99999999999",
		"ep=a&lwm2m=2.0&b=XY",
		"ep=a&Q=1",
	} {
		f.Add(q, true)
		f.Add(q, false)
	}
	f.Fuzz(func(t *testing.T, q string, register bool) {
		p, err := parseRegParams(strings.Split(q, "&"), register)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		if register && (p.ep == "" || len(p.ep) > maxEndpointName) {
			t.Fatalf("accepted endpoint %q", p.ep)
		}
		if p.hasLt && p.lt <= 0 {
			t.Fatalf("accepted lifetime %v", p.lt)
		}
		if p.hasB && checkBinding(p.binding) != nil {
			t.Fatalf("accepted binding %q", p.binding)
		}
	})
}

// FuzzRegisterLinks: the object list parser (lwm2m's, as the server uses
// it) never panics and refuses with ErrBadRequest.
func FuzzRegisterLinks(f *testing.F) {
	for _, l := range []string{
		links,
		`</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>`,
		"</3/0",
		`</3>;ver=x`,
		`<>,<//>;a="b,c";d`,
		"",
	} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rp, err := parseLinks([]byte(s))
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		if rp.RootPath == "" || rp.RootPath[0] != '/' {
			t.Fatalf("root path %q", rp.RootPath)
		}
	})
}

// FuzzServeRequest feeds decoded datagrams to the server's request router
// (register, update, de-register, Send and unknown paths, any options and
// payloads): it must answer every one, with a response code, and never
// panic.
func FuzzServeRequest(f *testing.F) {
	reg := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: 1, Token: []byte{1}, Payload: []byte(links)}
	reg.SetPath("/rd")
	reg.AddQuery("ep=fuzz")
	reg.AddQuery("lt=60")
	upd := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: 2, Token: []byte{2}}
	upd.SetPath("/rd/x")
	dp := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: 3, Payload: []byte(`[{"n":"/3/0/0","vs":"a"}]`)}
	dp.SetPath("/dp")
	dp.SetContentFormat(110)
	for _, m := range []*coap.Message{reg, upd, dp} {
		b, _ := m.Marshal()
		f.Add(b)
	}
	s := New(testConfig())
	peer := coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5683")}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := coap.Unmarshal(data)
		if err != nil || !m.Code.IsRequest() {
			return
		}
		resp := s.serveCoAP(context.Background(), &coap.Request{Peer: peer, Message: m.Clone()})
		if resp == nil || !resp.Code.IsResponse() {
			t.Fatalf("no response to %v", m)
		}
		if resp.Then != nil { // as the endpoint does once the response is out
			resp.Then()
		}
	})
}
