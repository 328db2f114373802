package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// deferredRecorder is a DeferredHandler: it hands every stored callback to
// the test, which decides when (and whether) the values are stored.
type deferredRecorder struct {
	*recorder
	stores chan func(error)
}

func (r *deferredRecorder) NotifiedDeferred(ctx context.Context, reg *Registration, o *Observation, recs []lwm2m.Record, stored func(error)) error {
	r.stores <- stored
	return nil
}

func (r *deferredRecorder) SentDeferred(ctx context.Context, reg *Registration, recs []lwm2m.Record, stored func(error)) error {
	r.stores <- stored
	return nil
}

func (r *deferredRecorder) next(t *testing.T) func(error) {
	t.Helper()
	select {
	case f := <-r.stores:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("the handler got nothing")
		return nil
	}
}

func newDeferredRecorder() *deferredRecorder {
	return &deferredRecorder{recorder: newRecorder(), stores: make(chan func(error), 16)}
}

// deferredSetup registers a device whose CoAP timers leave room for the
// test between a notification and its retransmissions.
func deferredSetup(t *testing.T) (*Server, *deferredRecorder, *device) {
	t.Helper()
	rec := newDeferredRecorder()
	s, d := deferredSetupWith(t, rec, rec.recorder)
	return s, rec, d
}

// deferredSetupWith is deferredSetup with handler h, which reports its
// events to events.
func deferredSetupWith(t *testing.T, h Handler, events *recorder) (*Server, *device) {
	t.Helper()
	s, addr := testServer(t, testConfig(), h)
	cc := coap.DefaultConfig()
	cc.ACKTimeout = 300 * time.Millisecond
	d := newDeviceWith(t, "127.0.0.1:0", addr, cc)
	d.register("dev")
	events.next(t, "registered")
	return s, d
}

func notStarted[T any](t *testing.T, ch chan T, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s before the values were stored: %v", what, v)
	default:
	}
}

// TestNotificationAckedOnlyWhenStored: a DeferredHandler's notification
// is acknowledged when stored(nil) is called, not before; stored(err)
// leaves it unacknowledged and its retransmission is delivered again.
func TestNotificationAckedOnlyWhenStored(t *testing.T) {
	s, rec, d := deferredSetup(t)
	if _, _, err := s.Observe(ctxT(t), "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- d.notify(coap.Confirmable, 5, "22", lwm2m.FormatText) }()
	stored := rec.next(t)
	notStarted(t, acked, "ACK")
	stored(errors.New("disk full")) // not taken: no ACK, the device retransmits
	notStarted(t, acked, "ACK")
	stored = rec.next(t) // the retransmission, delivered again
	notStarted(t, acked, "ACK")
	stored(nil)
	if err := <-acked; err != nil {
		t.Fatalf("notification after stored(nil): %v", err)
	}
	if st := s.Stats(); st.Notifications != 1 || st.NotificationDrops != 1 {
		t.Fatalf("%+v", st)
	}
}

// sendReading sends one reading from d (Send, /dp) in the background; the
// channel gets the answer, or an error's text as the payload of an empty
// message.
func sendReading(d *device) chan *coap.Message {
	answered := make(chan *coap.Message, 1)
	go func() {
		m := &coap.Message{Code: coap.POST, Payload: []byte(`[{"n":"/3303/0/5700","v":20.5}]`)}
		m.SetPath("/dp")
		m.Options = append(m.Options, coap.Option{ID: coap.ContentFormat, Value: coap.EncodeUint(uint32(lwm2m.FormatSenMLJSON))})
		resp, err := d.ep.Do(context.Background(), d.server, m)
		if err != nil {
			resp = &coap.Message{Payload: []byte(err.Error())}
		}
		answered <- resp
	}()
	return answered
}

// TestSendAnsweredOnlyWhenStored: Send gets 2.04 once stored(nil) runs,
// 5.03 when the values could not be stored.
func TestSendAnsweredOnlyWhenStored(t *testing.T) {
	_, rec, d := deferredSetup(t)
	for _, c := range []struct {
		err  error
		want coap.Code
	}{{nil, coap.Changed}, {errors.New("disk full"), coap.ServiceUnavailable}} {
		answered := sendReading(d)
		stored := rec.next(t)
		notStarted(t, answered, "answer")
		stored(c.err)
		if resp := <-answered; resp.Code != c.want {
			t.Fatalf("stored(%v): %s %s, want %s", c.err, resp.Code, resp.Payload, c.want)
		}
	}
}

// TestDeferredNotificationFreesTheWorker: while one device's notification
// waits for its values to be stored, the worker serves other devices —
// here all on a single worker.
func TestDeferredNotificationFreesTheWorker(t *testing.T) {
	rec := newDeferredRecorder()
	cfg := testConfig()
	cfg.CoAP.Workers = 1
	s, addr := testServer(t, cfg, rec)
	cc := coap.DefaultConfig()
	devs := make([]*device, 2)
	for i := range devs {
		devs[i] = newDeviceWith(t, "127.0.0.1:0", addr, cc)
		devs[i].register(fmt.Sprintf("dev-%d", i))
		rec.recorder.next(t, "registered")
		if _, _, err := s.Observe(ctxT(t), fmt.Sprintf("dev-%d", i), lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText); err != nil {
			t.Fatal(err)
		}
	}
	acked := make([]chan error, 2)
	stores := make([]func(error), 2)
	for i, d := range devs {
		acked[i] = make(chan error, 1)
		go func() { acked[i] <- d.notify(coap.Confirmable, 5, "22", lwm2m.FormatText) }()
		stores[i] = rec.next(t) // the second arrives although the first is not stored
	}
	notStarted(t, acked[0], "ACK")
	notStarted(t, acked[1], "ACK")
	for i := range devs {
		stores[i](nil)
		if err := <-acked[i]; err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
	}
}

// TestSendStoredAfterEmptyACK: values stored after the processing delay
// get an empty ACK first and the 2.04 as a separate response (RFC 7252
// §5.2.2).
func TestSendStoredAfterEmptyACK(t *testing.T) {
	_, rec, d := deferredSetup(t)
	answered := sendReading(d)
	stored := rec.next(t)
	// Nothing else is sent to the device: what it receives now is the
	// empty ACK (the response needs stored).
	recv0 := d.ep.Stats().Received
	waitFor(t, "the empty ACK", func() bool { return d.ep.Stats().Received > recv0 })
	notStarted(t, answered, "answer")
	stored(nil)
	if resp := <-answered; resp.Code != coap.Changed {
		t.Fatalf("separate response: %s %s", resp.Code, resp.Payload)
	}
}

// staleRecorder is a deferredRecorder that also takes stale notifications
// (StaleHandler) on a channel of their own.
type staleRecorder struct {
	*deferredRecorder
	stale chan func(error)
}

func (r *staleRecorder) NotifiedStale(ctx context.Context, reg *Registration, o *Observation, recs []lwm2m.Record, stored func(error)) error {
	r.stale <- stored
	return nil
}

// TestStaleNotificationStored (issue 13): a confirmable notification
// older than the last one delivered (RFC 7641 §3.4, reordered on the way)
// goes to a StaleHandler's NotifiedStale, and is acknowledged only when
// its values are stored, like a fresh one; a DeferredHandler without
// NotifiedStale gets it through NotifiedDeferred.
func TestStaleNotificationStored(t *testing.T) {
	dr := newDeferredRecorder()
	rec := &staleRecorder{deferredRecorder: dr, stale: make(chan func(error), 16)}
	s, d := deferredSetupWith(t, rec, dr.recorder)
	if _, _, err := s.Observe(ctxT(t), "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	acked := make(chan error, 1)
	go func() { acked <- d.notify(coap.Confirmable, 5, "22", lwm2m.FormatText) }()
	dr.next(t)(nil)
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	go func() { acked <- d.notify(coap.Confirmable, 3, "21", lwm2m.FormatText) }()
	var stored func(error)
	select {
	case stored = <-rec.stale:
	case f := <-dr.stores:
		f(nil)
		t.Fatal("the stale notification went to NotifiedDeferred")
	case <-time.After(10 * time.Second):
		t.Fatal("the stale notification was not delivered")
	}
	notStarted(t, acked, "ACK")
	stored(errors.New("disk full")) // not taken: no ACK, the device retransmits
	notStarted(t, acked, "ACK")
	select {
	case stored = <-rec.stale:
	case <-time.After(10 * time.Second):
		t.Fatal("the retransmission of the refused stale notification was not delivered")
	}
	stored(nil)
	if err := <-acked; err != nil {
		t.Fatalf("stale notification after stored(nil): %v", err)
	}
	if st := s.Stats(); st.Notifications != 2 || st.NotificationDrops != 1 || st.CoAP.StaleNotifications != 1 {
		t.Fatalf("%+v", st)
	}

	// Without NotifiedStale, a stale notification is an ordinary one.
	s2, rec2, d2 := deferredSetup(t)
	if _, _, err := s2.Observe(ctxT(t), "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint32{5, 3} {
		go func() { acked <- d2.notify(coap.Confirmable, seq, "22", lwm2m.FormatText) }()
		rec2.next(t)(nil)
		if err := <-acked; err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
	if st := s2.Stats(); st.Notifications != 2 || st.CoAP.StaleNotifications != 1 {
		t.Fatalf("%+v", st)
	}
}
