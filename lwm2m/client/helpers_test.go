package client

import (
	"context"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// newTestClient builds a client with a Server object, a Device object, two
// temperature instances and an empty Event Log object, without a transport.
func newTestClient(t testing.TB, version Version) (*Client, map[uint16]*ValueObject) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Endpoint = "unit-1"
	cfg.Version = version
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := c.Tree().Registry()
	objs := map[uint16]*ValueObject{}
	for _, id := range []uint16{0, 1, 3, 3303, 20} {
		m, ok := reg.Object(id)
		if !ok {
			t.Fatalf("registry has no model for object %d", id)
		}
		objs[id] = NewValueObject(m)
	}
	must(t, objs[0].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("coap://127.0.0.1:5683"), 1: lwm2m.Bool(false), 2: lwm2m.Int(3)}))
	must(t, objs[1].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.Int(1), 1: lwm2m.Int(300), 2: lwm2m.Int(0), 3: lwm2m.Int(0), 6: lwm2m.Bool(true), 7: lwm2m.String("U")}))
	must(t, objs[3].AddInstance(0, map[uint16]lwm2m.Value{0: lwm2m.String("FlowNexus"), 1: lwm2m.String("sim-1"), 9: lwm2m.Int(87), 16: lwm2m.String("UQ"), 14: lwm2m.String("+01:00")}))
	must(t, objs[3].SetMulti(lwm2m.MustParsePath("/3/0/11"), map[uint16]lwm2m.Value{0: lwm2m.Int(0)}))
	must(t, objs[3303].AddInstance(0, map[uint16]lwm2m.Value{5700: lwm2m.Float(21.5), 5701: lwm2m.String("Cel")}))
	must(t, objs[3303].AddInstance(1, map[uint16]lwm2m.Value{5700: lwm2m.Float(4.0), 5701: lwm2m.String("Cel")}))
	for _, id := range []uint16{0, 1, 3, 3303, 20} {
		must(t, c.Tree().Add(objs[id]))
	}
	return c, objs
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serve runs one request through the client's CoAP handler, as the endpoint
// would, and runs the response's Then hook.
func serve(t *testing.T, c *Client, m *coap.Message) *coap.Response {
	t.Helper()
	if len(m.Token) == 0 {
		m.Token = []byte{1, 2, 3, 4}
	}
	r := c.ServeCoAP(context.Background(), &coap.Request{Message: m})
	if r == nil {
		t.Fatalf("%s %s: no response", m.Code, m.Path())
	}
	if r.Then != nil {
		r.Then()
	}
	return r
}

func req(code coap.Code, path string) *coap.Message {
	m := &coap.Message{Code: code, Type: coap.Confirmable}
	m.SetPath(path)
	return m
}
