package simulation

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// TestFleetConfirmableAck: with ConfirmableNotify the devices' notifications
// are CON and the fleet reports how long they waited for their ACKs.
func TestFleetConfirmableAck(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, 2*time.Second)
	cfg := DefaultConfig()
	cfg.Server = addr
	cfg.Devices = 2
	cfg.StartSpread = 0
	cfg.Rate = 100 * time.Millisecond
	cfg.Lifetime = 60 * time.Second
	cfg.CoAP = fastCoAP()
	cfg.ConfirmableNotify = true
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, f.AllRegistered(), "all devices registered")
	for _, d := range f.Devices() {
		if _, _, err := srv.Observe(ctx, d.Endpoint(), lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone); err != nil {
			t.Fatalf("observe %s: %v", d.Endpoint(), err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for f.Stats().Ack.Count < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no acknowledged notifications: %+v", f.Stats())
		}
		waitFor(t, tickAfter(20*time.Millisecond), "acknowledged notifications")
	}
	s := f.Stats().Ack
	if s.P50 <= 0 || s.P99 < s.P50 || s.Max < s.P99 {
		t.Fatalf("ack stats %+v", s)
	}
}
