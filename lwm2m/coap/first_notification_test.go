package coap

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// firstRig is an observing endpoint and a device on a raw UDP socket that
// answers the observe request by hand, so that the test decides how the
// response travels: piggybacked, separately after an empty ACK (RFC 7252
// §5.2.2), or lost and overtaken by the first notification.
type firstRig struct {
	t    *testing.T
	ep   *Endpoint
	dev  *net.UDPConn
	to   *net.UDPAddr
	req  *Message // the observe request as the device got it
	read int      // datagrams the device read
	ping uint16   // message id of the last CoAP ping
	got  chan *firstDelivery
	done chan firstObserved
}

// firstDelivery is one message handed to the observation's function,
// which returns what the test sends on reply.
type firstDelivery struct {
	msg   *Message
	stale bool
	reply chan error
}

// firstObserved is what Observe returned.
type firstObserved struct {
	o    *Observation
	resp *Message
	err  error
}

func newFirstRig(t *testing.T) *firstRig {
	t.Helper()
	tr, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	// The observe request is never retransmitted, so the device reads
	// exactly the datagrams the test accounts for, and a request the
	// device does not acknowledge stays outstanding.
	cfg.ACKTimeout = time.Minute
	cfg.RequestTimeout = 2 * time.Minute
	ep := NewEndpoint(tr, nil, cfg)
	run(t, ep)
	dev, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	r := &firstRig{t: t, ep: ep, dev: dev, to: ep.LocalAddr().(*net.UDPAddr), ping: 900,
		got: make(chan *firstDelivery, 16), done: make(chan firstObserved, 1)}
	// A test that fails while the function holds a message must not
	// leave the endpoint's worker blocked: Run waits for it.
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	fn := func(n *Notification) error {
		d := &firstDelivery{msg: n.Message, stale: n.Stale, reply: make(chan error, 1)}
		r.got <- d
		select {
		case err := <-d.reply:
			return err
		case <-stop:
			return errors.New("test over")
		}
	}
	devPeer := Peer{Addr: netip.MustParseAddrPort(dev.LocalAddr().String())}
	go func() {
		o, resp, err := ep.Observe(context.Background(), devPeer, get("/3303/0/5700"), fn)
		r.done <- firstObserved{o, resp, err}
	}()
	r.req = r.recv()
	if v, ok := r.req.Observe(); r.req.Type != Confirmable || r.req.Code != GET || !ok || v != 0 {
		t.Fatalf("device got %+v, want the observe request", r.req)
	}
	return r
}

// recv reads the next datagram the device gets.
func (r *firstRig) recv() *Message {
	r.t.Helper()
	buf := make([]byte, 1500)
	r.dev.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard only
	n, _, err := r.dev.ReadFromUDP(buf)
	if err != nil {
		r.t.Fatalf("device read: %v", err)
	}
	r.read++
	m, err := Unmarshal(buf[:n])
	if err != nil {
		r.t.Fatal(err)
	}
	return m.Clone()
}

func (r *firstRig) send(m *Message) {
	r.t.Helper()
	b, err := m.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.dev.WriteToUDP(b, r.to); err != nil {
		r.t.Fatal(err)
	}
}

// response is an answer to the observe request; seq < 0 leaves out the
// Observe option.
func (r *firstRig) response(typ Type, code Code, mid uint16, seq int, payload string) *Message {
	m := &Message{Type: typ, Code: code, MessageID: mid, Token: r.req.Token, Payload: []byte(payload)}
	if seq >= 0 {
		m.SetObserve(uint32(seq))
	}
	return m
}

// emptyAck acknowledges the observe request without its response, which
// the device then sends separately (RFC 7252 §5.2.2).
func (r *firstRig) emptyAck() {
	r.send(&Message{Type: Acknowledgement, MessageID: r.req.MessageID})
}

// quiet checks that the endpoint has sent the device nothing since the
// last datagram the device read. Stats.Sent counts a datagram before it
// is written; and a CoAP ping (RFC 7252 §4.3) is answered with RST, which
// must then be the next datagram the device reads: whatever the endpoint
// sent before answering it (an early ACK) would come first.
func (r *firstRig) quiet(what string) {
	r.t.Helper()
	if s := r.ep.Stats().Sent; s != uint64(r.read) {
		r.t.Fatalf("%s: the endpoint sent %d datagrams, the device read %d", what, s, r.read)
	}
	r.ping++
	r.send(&Message{Type: Confirmable, MessageID: r.ping})
	if m := r.recv(); m.Type != Reset || m.MessageID != r.ping {
		r.t.Fatalf("%s: the device got %v %s mid %d before the answer to its ping", what, m.Type, m.Code, m.MessageID)
	}
}

// ack reads the next datagram, which must be the empty ACK of mid.
func (r *firstRig) ack(mid uint16) {
	r.t.Helper()
	if m := r.recv(); m.Type != Acknowledgement || m.Code != Empty || m.MessageID != mid {
		r.t.Fatalf("device got %v %s mid %d, want the empty ACK of %d", m.Type, m.Code, m.MessageID, mid)
	}
}

func (r *firstRig) observed() firstObserved {
	r.t.Helper()
	select {
	case res := <-r.done:
		return res
	case <-time.After(10 * time.Second):
		r.t.Fatal("Observe did not return")
		return firstObserved{}
	}
}

// delivered waits for the function to get a message: mid, carrying
// payload, not stale.
func (r *firstRig) delivered(mid uint16, payload string) *firstDelivery {
	r.t.Helper()
	select {
	case d := <-r.got:
		if d.msg.MessageID != mid || string(d.msg.Payload) != payload || d.stale {
			r.t.Fatalf("delivered mid %d %q stale %v, want mid %d %q", d.msg.MessageID, d.msg.Payload, d.stale, mid, payload)
		}
		return d
	case <-time.After(10 * time.Second):
		r.t.Fatalf("message %d not delivered to the observation's function", mid)
		return nil
	}
}

// established checks Observe's result: the observation is made, its
// response is payload, and whether that went to the function too.
// separateResponse answers the observe with an empty ACK and then with
// the value 21.5 as a confirmable response of its own (message id 100),
// checks that Observe returned it and that it went to the observation's
// function, and returns it with its delivery.
func (r *firstRig) separateResponse() (*Message, *firstDelivery) {
	r.emptyAck()
	resp := r.response(Confirmable, Content, 100, 1, "21.5")
	r.send(resp)
	res := r.observed()
	r.quiet("Observe returned the separate response")
	r.established(res, "21.5", true)
	return resp, r.delivered(100, "21.5")
}

func (r *firstRig) established(res firstObserved, payload string, notified bool) {
	r.t.Helper()
	if res.err != nil || res.o == nil || string(res.resp.Payload) != payload {
		r.t.Fatalf("Observe: %+v, want an observation with response %q", res, payload)
	}
	if got := res.o.FirstNotified(); got != notified {
		r.t.Fatalf("FirstNotified %v, want %v", got, notified)
	}
}

// TestSeparateObserveResponseAckedAfterHandler: the device answers the
// observe request with an empty ACK and sends the response as a CON of
// its own (RFC 7252 §5.2.2). That response is the first notification
// (RFC 7641 §3.2): it establishes the observation and Observe returns
// it, but it is delivered to the observation's function like a
// notification and acknowledged only once the function returns — the ACK
// of a notification says its values were taken. Before, it was
// acknowledged on arrival and only handed to Observe's caller.
func TestSeparateObserveResponseAckedAfterHandler(t *testing.T) {
	r := newFirstRig(t)
	resp, d := r.separateResponse()
	r.quiet("the function holds the separate response")
	// Its retransmission is neither acknowledged nor delivered again
	// while the function holds it.
	r.send(resp)
	waitStat(t, "the retransmission deduplicated", func() bool { return r.ep.Stats().Duplicates == 1 })
	r.quiet("retransmission while the function holds it")

	d.reply <- nil
	r.ack(100)
	r.send(resp) // now answered from the deduplication cache (§4.5)
	r.ack(100)

	// The observation goes on; the next message delivered is the next
	// notification, so the response was delivered once.
	r.send(r.response(Confirmable, Content, 101, 2, "22"))
	d = r.delivered(101, "22")
	r.quiet("the next notification held")
	d.reply <- nil
	r.ack(101)
	if s := r.ep.Stats(); s.Notifications != 2 {
		t.Fatalf("%d notifications counted, want 2", s.Notifications)
	}
}

// TestSeparateObserveResponseRefusedIsRetried: a separate response the
// function refuses (a full queue, a failing disk) is left unacknowledged,
// like a refused notification (refuseNotification); the device's
// retransmission is delivered again and acknowledged once taken.
func TestSeparateObserveResponseRefusedIsRetried(t *testing.T) {
	r := newFirstRig(t)
	resp, d := r.separateResponse()
	d.reply <- errors.New("disk full")
	waitStat(t, "the refusal", func() bool { return r.ep.Stats().Overloaded == 1 })
	r.quiet("the function refused the separate response")

	r.send(resp) // the device retransmits
	d = r.delivered(100, "21.5")
	r.quiet("the retransmission held")
	d.reply <- nil
	r.ack(100)
	if s := r.ep.Stats(); s.Notifications != 2 || s.StaleNotifications != 0 {
		t.Fatalf("stats %+v: want 2 deliveries, none stale", s)
	}
}

// TestNotificationOvertakingLostObserveResponse: the device's piggybacked
// response is lost and its first notification arrives while the observe
// request is still unacknowledged. It answers the request (RFC 7641
// §3.2) and is delivered and acknowledged as a notification, after the
// function; the piggybacked response arriving late is ignored.
func TestNotificationOvertakingLostObserveResponse(t *testing.T) {
	r := newFirstRig(t)
	r.send(r.response(Confirmable, Content, 200, 2, "22.5"))
	res := r.observed()
	r.quiet("Observe returned the notification")
	r.established(res, "22.5", true)
	d := r.delivered(200, "22.5")
	r.quiet("the function holds the notification")

	// The lost answer turns up after all: the request it answers is
	// over, so it is neither delivered nor answered.
	r.send(r.response(Acknowledgement, Content, r.req.MessageID, 1, "21.5"))
	r.quiet("the late piggybacked response")
	d.reply <- nil
	r.ack(200)

	r.send(r.response(Confirmable, Content, 201, 3, "23"))
	d = r.delivered(201, "23") // not the late response
	d.reply <- nil
	r.ack(201)
	if s := r.ep.Stats(); s.Notifications != 2 {
		t.Fatalf("%d notifications counted, want 2", s.Notifications)
	}
}

// TestObserveResponsesOtherwiseUnchanged: only a confirmable success with
// Observe and a whole body is taken as a notification. An error or a
// success without Observe sent separately is acknowledged at once and
// goes to Observe's caller alone; so do a NON response and a
// piggybacked one.
func TestObserveResponsesOtherwiseUnchanged(t *testing.T) {
	t.Run("separate error", func(t *testing.T) {
		r := newFirstRig(t)
		r.emptyAck()
		r.send(r.response(Confirmable, NotFound, 100, -1, ""))
		r.ack(100)
		if res := r.observed(); res.err != nil || res.o != nil || res.resp.Code != NotFound {
			t.Fatalf("Observe: %+v, want the 4.04 and no observation", res)
		}
		r.quiet("after the 4.04")
		if n := r.ep.Stats().Notifications; n != 0 {
			t.Fatalf("%d notifications, want 0", n)
		}
	})
	t.Run("separate without Observe", func(t *testing.T) {
		r := newFirstRig(t)
		r.emptyAck()
		r.send(r.response(Confirmable, Content, 100, -1, "21.5"))
		r.ack(100)
		if res := r.observed(); !errors.Is(res.err, ErrNotObserved) || res.o != nil {
			t.Fatalf("Observe: %+v, want ErrNotObserved", res)
		}
		r.quiet("after the response")
		if n := r.ep.Stats().Notifications; n != 0 {
			t.Fatalf("%d notifications, want 0", n)
		}
	})
	for _, c := range []struct {
		name string
		typ  Type
	}{{"separate NON", NonConfirmable}, {"piggybacked", Acknowledgement}} {
		t.Run(c.name, func(t *testing.T) {
			r := newFirstRig(t)
			mid := uint16(100)
			if c.typ == Acknowledgement {
				mid = r.req.MessageID
			} else {
				r.emptyAck()
			}
			r.send(r.response(c.typ, Content, mid, 1, "21.5"))
			r.established(r.observed(), "21.5", false)
			r.quiet("after the response")
			// The next message the function gets is the next
			// notification: the response was not delivered.
			r.send(r.response(Confirmable, Content, 101, 2, "22"))
			d := r.delivered(101, "22")
			d.reply <- nil
			r.ack(101)
		})
	}
}
