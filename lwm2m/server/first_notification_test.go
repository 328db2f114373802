package server

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// valuesRecorder is a DeferredHandler that hands the test each
// notification's values with the function that stores them.
type valuesRecorder struct {
	*recorder
	got chan notifiedValues
}

type notifiedValues struct {
	o      *Observation
	recs   []lwm2m.Record
	stored func(error)
}

func (r *valuesRecorder) NotifiedDeferred(ctx context.Context, reg *Registration, o *Observation, recs []lwm2m.Record, stored func(error)) error {
	r.got <- notifiedValues{o, recs, stored}
	return nil
}

func (r *valuesRecorder) SentDeferred(ctx context.Context, reg *Registration, recs []lwm2m.Record, stored func(error)) error {
	stored(nil)
	return nil
}

func (r *valuesRecorder) values(t *testing.T) notifiedValues {
	t.Helper()
	select {
	case v := <-r.got:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("the handler got no values")
		return notifiedValues{}
	}
}

// hasValue reports whether recs hold text value v at path p.
func hasValue(recs []lwm2m.Record, p, v string) bool {
	for _, r := range recs {
		if r.Path.String() == p && r.Value.Text() == v {
			return true
		}
	}
	return false
}

// TestSeparateObserveResponseStoredOnceAfterCommit: a device that
// acknowledges the observe request at once and sends its answer as a
// separate CON response (RFC 7252 §5.2.2) has that answer treated as the
// first notification (RFC 7641 §3.2): its values go to NotifiedDeferred,
// decoded by the response's content format against the observed path,
// the device's ACK waits for stored(nil), and Observe returns no values,
// so they are kept once. Before, the response was acknowledged on
// arrival and its values only returned by Observe, to be stored later.
func TestSeparateObserveResponseStoredOnceAfterCommit(t *testing.T) {
	for _, c := range []struct {
		name      string
		composite bool
		next      string // the notification after it
		nextF     lwm2m.Format
	}{
		{"single", false, "22", lwm2m.FormatText},
		{"composite", true, `[{"n":"/3303/0/5700","vs":"22"}]`, lwm2m.FormatSenMLJSON},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := &valuesRecorder{recorder: newRecorder(), got: make(chan notifiedValues, 16)}
			cfg := testConfig()
			cfg.RequestTimeout = time.Minute
			// The server sends the device only what the test counts: no
			// retransmission of the observe request, every answer
			// piggybacked.
			cfg.CoAP.ACKTimeout = time.Minute
			cfg.CoAP.RequestTimeout = 2 * time.Minute
			cfg.CoAP.ProcessingDelay = 0
			s, addr := testServer(t, cfg, rec)
			cc := coap.DefaultConfig()
			cc.ProcessingDelay = time.Millisecond // the empty ACK goes out at once
			d := newDeviceWith(t, "127.0.0.1:0", addr, cc)
			d.register("dev")
			rec.next(t, "registered")

			// The device answers the observe only once its empty ACK is
			// out, so the answer goes separately.
			release := make(chan struct{})
			d.mu.Lock()
			d.handler = func(ctx context.Context, r *coap.Request) *coap.Response {
				<-release
				d.mu.Lock()
				d.handler = nil
				d.mu.Unlock()
				return d.serve(ctx, r)
			}
			d.mu.Unlock()
			sent := d.ep.Stats().Sent
			type observed struct {
				o    *Observation
				recs []lwm2m.Record
				err  error
			}
			done := make(chan observed, 1)
			go func() {
				var r observed
				if c.composite {
					paths := []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700"), lwm2m.MustParsePath("/3/0/0")}
					r.o, r.recs, r.err = s.ObserveComposite(ctxT(t), "dev", paths, lwm2m.FormatSenMLJSON)
				} else {
					r.o, r.recs, r.err = s.Observe(ctxT(t), "dev", lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatText)
				}
				done <- r
			}()
			waitFor(t, "the device's empty ACK", func() bool { return d.ep.Stats().Sent > sent })
			recv := d.ep.Stats().Received
			close(release)
			var res observed
			select {
			case res = <-done:
			case <-time.After(time.Minute):
				t.Fatal("Observe did not return")
			}
			if res.err != nil || res.o == nil {
				t.Fatalf("Observe: %v %v", res.o, res.err)
			}
			// An Update answered (piggybacked) proves the order: the
			// device got nothing before its 2.04, so no ACK of the
			// separate response.
			if resp := d.req(coap.POST, d.loc, nil, nil); resp.Code != coap.Changed {
				t.Fatalf("update: %s", resp.Code)
			}
			if n := d.ep.Stats().Received - recv; n != 1 {
				t.Fatalf("the device received %d datagrams, want only the Update's 2.04: the separate response was acknowledged before its values were stored", n)
			}
			if len(res.recs) != 0 {
				t.Fatalf("Observe returned %v: the values of a separate response are the handler's to store", res.recs)
			}
			v := rec.values(t)
			if v.o != res.o || !hasValue(v.recs, "/3303/0/5700", "21.5") {
				t.Fatalf("handler got %v for observation %p, want 21.5 at /3303/0/5700 for %p", v.recs, v.o, res.o)
			}
			if c.composite && !hasValue(v.recs, "/3/0/0", "FlowNexus") {
				t.Fatalf("composite values %v lack /3/0/0", v.recs)
			}
			v.stored(nil)
			waitFor(t, "the ACK after the values were stored", func() bool { return d.ep.Stats().Received-recv == 2 })

			// The next values the handler gets are the next
			// notification's: the response's were delivered once.
			acked := make(chan error, 1)
			go func() { acked <- d.notify(coap.Confirmable, 2, c.next, c.nextF) }()
			v = rec.values(t)
			if !hasValue(v.recs, "/3303/0/5700", "22") {
				t.Fatalf("handler got %v, want the next notification's 22", v.recs)
			}
			v.stored(nil)
			if err := <-acked; err != nil {
				t.Fatalf("next notification: %v", err)
			}
		})
	}
}
