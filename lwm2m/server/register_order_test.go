package server

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// answerWatch is a transport that, as the 2.01 answering a Register goes
// out, asks the server whether work waiting for that registration would
// already be released.
type answerWatch struct {
	coap.Transport
	srv      *Server
	endpoint string

	mu       sync.Mutex
	answers  int
	released []error // AwaitRegistration's answer at each 2.01
}

func (w *answerWatch) WriteTo(b []byte, to coap.Peer) error {
	if m, err := coap.Unmarshal(b); err == nil && m.Code == coap.Created {
		if loc := m.LocationPath(); len(loc) == 2 && loc[0] == "rd" {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // only asks: a pending registration answers ctx's error
			err := w.srv.AwaitRegistration(ctx, w.endpoint, loc[1])
			w.mu.Lock()
			w.answers++
			w.released = append(w.released, err)
			w.mu.Unlock()
		}
	}
	return w.Transport.WriteTo(b, to)
}

// TestRegisterAnsweredBeforeWorkStarts: work the Handler starts for a
// device that registers (the appliance's reads and observes) waits in
// AwaitRegistration until the 2.01 has been handed to the transport, so
// that no request overtakes the answer that tells the device it is
// registered (Core §6.2.1). Before, the Register settled as its handler
// returned, and an observe could reach the device ahead of the 2.01.
func TestRegisterAnsweredBeforeWorkStarts(t *testing.T) {
	a := &awaiter{got: make(chan error, 1)}
	s := New(testConfig(), WithHandler(a))
	a.srv.Store(s)
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &answerWatch{Transport: tr, srv: s, endpoint: "order-1"}
	serveUntilCleanup(t, s, w)

	d := newDevice(t, tr.LocalAddr().String())
	d.register("order-1")
	if err := <-a.got; err != nil {
		t.Fatalf("work for the registration: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.answers != 1 {
		t.Fatalf("%d answers to the Register seen, want 1", w.answers)
	}
	if err := w.released[0]; !errors.Is(err, context.Canceled) {
		t.Fatalf("as the 2.01 went out, AwaitRegistration answered %v: work was already released", err)
	}
}
