package client

import (
	"context"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// FuzzServeCoAP feeds arbitrary CoAP messages to the client's request
// handler: whatever arrives, it answers with a response and never panics.
// Seeds are the requests of the handler tests.
func FuzzServeCoAP(f *testing.F) {
	seed := func(m *coap.Message) {
		m.Token = []byte{1}
		b, err := m.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(req(coap.GET, "/3/0"))
	m := req(coap.GET, "/3303/0/5700")
	m.SetObserve(0)
	seed(m)
	m = req(coap.GET, "/3303")
	m.SetAccept(uint16(lwm2m.FormatLinkFormat))
	seed(m)
	m = req(coap.PUT, "/1/0/1")
	m.SetContentFormat(uint16(lwm2m.FormatText))
	m.Payload = []byte("60")
	seed(m)
	m = req(coap.PUT, "/3303/0/5700")
	m.AddQuery("pmin=1")
	m.AddQuery("gt=3")
	seed(m)
	m = req(coap.POST, "/3303")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = []byte(`[{"bn":"/3303/4/","n":"5700","v":1}]`)
	seed(m)
	m = req(coap.POST, "/1/0")
	m.SetContentFormat(uint16(lwm2m.FormatTLV))
	m.Payload = []byte{0xc1, 0x01, 0x3c}
	seed(m)
	m = req(coap.FETCH, "/")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLJSON))
	m.Payload = []byte(`[{"n":"/3/0/9"},{"n":"/3303"}]`)
	seed(m)
	m = req(coap.IPATCH, "/")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLCBOR))
	m.Payload = []byte{0x81, 0xa2, 0x00, 0x66, '/', '1', '/', '0', '/', '1', 0x02, 0x18, 0x3c}
	seed(m)
	seed(req(coap.DELETE, "/3303/1"))
	m = req(coap.POST, "/3/0/4")
	m.Payload = []byte("0='x',1")
	seed(m)

	c, _ := newTestClient(f, Version11)
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := coap.Unmarshal(data)
		if err != nil || !m.Code.IsRequest() {
			return
		}
		r := c.ServeCoAP(context.Background(), &coap.Request{Message: m})
		if r == nil {
			t.Fatalf("no response to %v", m)
		}
		if r.Then != nil {
			r.Then()
		}
		c.obs.cancelAll()
	})
}

// FuzzExecuteArgs: the Execute argument parser never panics, and accepts
// only what its grammar allows (Core §5.4.5).
func FuzzExecuteArgs(f *testing.F) {
	for _, s := range []string{"", "0", "0,1", "0='a'", "1='x y',2", "x", "0=", "0='", "0,", "5='a'b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkExecuteArgs(s) == nil {
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] > 0x7e {
					t.Fatalf("accepted %q with byte %#x", s, s[i])
				}
			}
		}
	})
}
