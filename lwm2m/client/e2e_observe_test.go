package client

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// observeFrom starts an observation of p by the raw server and returns its
// notifications.
func observeFrom(t *testing.T, s *rawServer, m *coap.Message) (*coap.Observation, chan *coap.Message) {
	t.Helper()
	notes := make(chan *coap.Message, 16)
	o, first, err := s.ep.Observe(context.Background(), s.device(), m, func(n *coap.Notification) error {
		notes <- n.Message
		return nil
	})
	must(t, err)
	if first.Code != coap.Content {
		t.Fatalf("observe %s: %s %s", m.Path(), first.Code, first.Payload)
	}
	return o, notes
}

func nextNote(t *testing.T, notes chan *coap.Message) *coap.Message {
	t.Helper()
	select {
	case n := <-notes:
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	return nil
}

// TestE2EConfirmableAndReset: with con=1 notifications are confirmable; a
// server that forgot the observation answers the next one with RST, and
// the client drops it (RFC 7641 §3.6).
func TestE2EConfirmableAndReset(t *testing.T) {
	s := startRawServer(t)
	c, objs, _, _ := startClient(t, s, nil)
	s.wait(t, "register")
	wa := req(coap.PUT, "/3303/0/5700")
	wa.AddQuery("con=1")
	r, err := s.ep.Do(context.Background(), s.device(), wa)
	must(t, err)
	if r.Code != coap.Changed {
		t.Fatalf("write-attributes: %s", r.Code)
	}
	o, notes := observeFrom(t, s, req(coap.GET, "/3303/0/5700"))
	must(t, objs[3303].Set(temp, lwm2m.Float(25)))
	if n := nextNote(t, notes); n.Type != coap.Confirmable {
		t.Fatalf("notification type %s with con=1", n.Type)
	}
	o.Forget()
	must(t, objs[3303].Set(temp, lwm2m.Float(26)))
	for len(c.Observations()) != 0 {
		select {
		case <-time.After(20 * time.Millisecond):
		case <-t.Context().Done():
		}
	}
}

// TestE2EObserveComposite: FETCH with Observe=0 and a path list observes
// several resources; one change notifies all of them in one payload.
func TestE2EObserveComposite(t *testing.T) {
	s := startRawServer(t)
	_, objs, _, _ := startClient(t, s, nil)
	s.wait(t, "register")
	m := req(coap.FETCH, "/")
	m.SetContentFormat(uint16(lwm2m.FormatSenMLCBOR))
	m.SetAccept(uint16(lwm2m.FormatSenMLCBOR))
	b, err := lwm2m.EncodePaths(lwm2m.FormatSenMLCBOR, []lwm2m.Path{temp, lwm2m.MustParsePath("/3303/1/5700")})
	must(t, err)
	m.Payload = b
	_, notes := observeFrom(t, s, m)
	must(t, objs[3303].Set(lwm2m.MustParsePath("/3303/1/5700"), lwm2m.Float(-3)))
	n := nextNote(t, notes)
	recs, err := lwm2m.Decode(lwm2m.FormatSenMLCBOR, lwm2m.Path{}, n.Payload, nil)
	must(t, err)
	if len(recs) != 2 || recs[1].Value.Float() != -3 {
		t.Fatalf("composite notification %v", recs)
	}
}

// TestE2EQueueModeNotify: a sleeping client with a notification due first
// sends an Update (waking the server's queue), then the notification.
func TestE2EQueueModeNotify(t *testing.T) {
	s := startRawServer(t)
	c, objs, evs, _ := startClient(t, s, func(cfg *Config) {
		cfg.QueueMode = true
		cfg.AwakeWindow = queueTestWindow // the Observe must reach it awake
	})
	s.wait(t, "register")
	_, notes := observeFrom(t, s, req(coap.GET, "/3303/0/5700"))
	waitEvent(t, evs, EventSleeping)
	must(t, objs[3303].Set(temp, lwm2m.Float(27)))
	s.wait(t, "update")
	nextNote(t, notes)
	if c.Asleep() {
		t.Fatal("asleep right after notifying")
	}
}

// TestRunLeavesNoGoroutines: a client that ran and stopped leaves nothing
// running.
func TestRunLeavesNoGoroutines(t *testing.T) {
	s := startRawServer(t)
	// A first run brings the server's own goroutines up; the baseline is
	// taken after it.
	c, _, _, stop := startClient(t, s, nil)
	s.wait(t, "register")
	<-c.Registered()
	stop()
	s.wait(t, "deregister")
	base := runtime.NumGoroutine()
	c, _, _, stop = startClient(t, s, nil)
	s.wait(t, "register")
	<-c.Registered()
	stop()
	s.wait(t, "deregister")
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left (baseline %d):\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(10 * time.Millisecond)
	}
}

// TestE2EConfirmableNotifyLatency: an acknowledged CON notification is
// reported with how long it waited for its ACK; a NON one with none.
func TestE2EConfirmableNotifyLatency(t *testing.T) {
	for _, con := range []bool{true, false} {
		s := startRawServer(t)
		_, objs, evs, _ := startClient(t, s, func(c *Config) { c.ConfirmableNotify = con })
		s.wait(t, "register")
		_, notes := observeFrom(t, s, req(coap.GET, "/3303/0/5700"))
		must(t, objs[3303].Set(temp, lwm2m.Float(27)))
		if n := nextNote(t, notes); (n.Type == coap.Confirmable) != con {
			t.Fatalf("ConfirmableNotify %v: notification type %s", con, n.Type)
		}
		for {
			var e Event
			select {
			case e = <-evs:
			case <-time.After(10 * time.Second):
				t.Fatalf("ConfirmableNotify %v: no EventNotified", con)
			}
			if e.Kind != EventNotified {
				continue
			}
			if e.Err != nil || (e.Latency > 0) != con {
				t.Fatalf("ConfirmableNotify %v: EventNotified err %v latency %v", con, e.Err, e.Latency)
			}
			break
		}
	}
}
