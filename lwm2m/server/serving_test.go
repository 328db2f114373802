package server

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/flownexus/flownexus/lwm2m/coap"
)

// TestServingBeforeTrigger: until Serve has taken a transport, the
// server's own requests find no route to a device on it (the appliance's
// Registration Update Trigger after a restart was lost that way when it
// ran before Serve); Serving waits for that moment, and from then on the
// trigger reaches the device.
func TestServingBeforeTrigger(t *testing.T) {
	s := New(testConfig())
	tr, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	triggered := make(chan string, 1)
	d := newDevice(t, tr.LocalAddr().String())
	d.mu.Lock()
	d.handler = func(_ context.Context, r *coap.Request) *coap.Response {
		triggered <- r.Message.Code.String() + " " + r.Message.Path()
		return coap.NewResponse(coap.Changed)
	}
	d.mu.Unlock()
	devAddr := netip.MustParseAddrPort(d.ep.LocalAddr().String())

	if err := s.TriggerUpdate(ctxT(t), devAddr); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("trigger before Serve: %v, want ErrNoRoute", err)
	}
	asked, cancelAsk := context.WithCancel(context.Background())
	cancelAsk()
	if err := s.Serving(asked, tr); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serving before Serve: %v, want context.Canceled", err)
	}

	serveUntilCleanup(t, s, tr)
	if err := s.Serving(ctxT(t), tr); err != nil {
		t.Fatalf("Serving: %v", err)
	}
	if err := s.TriggerUpdate(ctxT(t), devAddr); err != nil {
		t.Fatalf("trigger once served: %v", err)
	}
	if got := <-triggered; got != "POST /1/0/8" {
		t.Fatalf("device got %q, want POST /1/0/8", got)
	}
	other, err := coap.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := s.Serving(asked, other); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serving of a transport never served: %v", err)
	}
}
