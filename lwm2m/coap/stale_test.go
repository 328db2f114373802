package coap

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// staleDelivery is one notification handed to an observation's function,
// with the function that acknowledges it (Notification.Defer).
type staleDelivery struct {
	seq     uint32
	stale   bool
	payload string
	done    func(error)
}

// staleRig is an observing endpoint and a device on a raw UDP socket that
// sends it notifications by hand, so that message ids and Observe numbers
// are the test's to choose.
type staleRig struct {
	t     *testing.T
	ep    *Endpoint
	dev   *net.UDPConn
	to    *net.UDPAddr
	tok   []byte
	obs   *Observation
	got   chan staleDelivery
	acked map[uint16]int // ACKs the device received, by message id
}

func newStaleRig(t *testing.T) *staleRig {
	tr, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep := NewEndpoint(tr, nil, testConfig())
	run(t, ep)
	dev, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dev.Close() })
	r := &staleRig{t: t, ep: ep, dev: dev, to: ep.LocalAddr().(*net.UDPAddr),
		tok: []byte{7, 7, 7, 7, 1, 2, 3, 4}, got: make(chan staleDelivery, 16), acked: map[uint16]int{}}
	req := get("/3303/0/5700")
	req.Token = r.tok
	devPeer := Peer{Addr: netip.MustParseAddrPort(dev.LocalAddr().String())}
	r.obs, err = ep.Resume(devPeer, req, func(n *Notification) error {
		seq, _ := n.Message.Observe()
		r.got <- staleDelivery{seq: seq, stale: n.Stale, payload: string(n.Message.Payload), done: n.Defer()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send sends a notification from the device.
func (r *staleRig) send(typ Type, mid uint16, seq uint32, payload string) {
	r.t.Helper()
	m := &Message{Type: typ, Code: Content, MessageID: mid, Token: r.tok, Payload: []byte(payload)}
	m.SetObserve(seq)
	b, err := m.Marshal()
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.dev.WriteToUDP(b, r.to); err != nil {
		r.t.Fatal(err)
	}
}

// delivered waits for the next delivery.
func (r *staleRig) delivered() staleDelivery {
	r.t.Helper()
	select {
	case d := <-r.got:
		return d
	case <-time.After(10 * time.Second):
		r.t.Fatal("no notification delivered")
		return staleDelivery{}
	}
}

// nothingDelivered checks that no delivery is waiting.
func (r *staleRig) nothingDelivered(what string) {
	r.t.Helper()
	select {
	case d := <-r.got:
		r.t.Fatalf("%s: delivered again: seq %d %q", what, d.seq, d.payload)
	default:
	}
}

// ack reads the next datagram the device receives: it must be an empty
// ACK; its message id is returned and counted.
func (r *staleRig) ack() uint16 {
	r.t.Helper()
	buf := make([]byte, 1500)
	r.dev.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := r.dev.ReadFromUDP(buf)
	if err != nil {
		r.t.Fatalf("no ACK: %v", err)
	}
	m, err := Unmarshal(buf[:n])
	if err != nil || m.Type != Acknowledgement || m.Code != Empty {
		r.t.Fatalf("device got %+v (%v), want an empty ACK", m, err)
	}
	r.acked[m.MessageID]++
	return m.MessageID
}

// stored sends a confirmable notification, checks that it is delivered
// as stale or fresh as want, lets its consumer store it and checks that
// the device gets its ACK.
func (r *staleRig) stored(mid uint16, seq uint32, payload string, stale bool) {
	r.t.Helper()
	r.send(Confirmable, mid, seq, payload)
	d := r.delivered()
	if d.seq != seq || d.stale != stale {
		r.t.Fatalf("message %d delivered as %+v, want seq %d stale %v", mid, d, seq, stale)
	}
	d.done(nil)
	if got := r.ack(); got != mid {
		r.t.Fatalf("ACK of %d, want %d", got, mid)
	}
}

// unanswered checks that the endpoint has sent the device nothing more
// than the ACKs counted so far: Stats.Sent counts every datagram written,
// and the endpoint sends this device nothing but ACKs.
func (r *staleRig) unanswered(what string) {
	r.t.Helper()
	acks := 0
	for _, n := range r.acked {
		acks += n
	}
	if s := r.ep.Stats().Sent; s != uint64(acks) {
		r.t.Fatalf("%s: the endpoint sent %d datagrams, the device read %d ACKs", what, s, acks)
	}
}

// TestStaleNotificationDeliveredAndAckedAfterHandler (issue 13): a
// confirmable notification reordered on the way (Observe 3 after 5, RFC
// 7641 §3.4) is delivered, marked Stale, and acknowledged only once its
// consumer finished with it (Notification.Defer), like a fresh one; the
// retransmission of either is not delivered twice; the observation's
// freshness state stays that of the newest.
func TestStaleNotificationDeliveredAndAckedAfterHandler(t *testing.T) {
	r := newStaleRig(t)

	r.send(Confirmable, 100, 5, "21.5")
	fresh := r.delivered()
	if fresh.seq != 5 || fresh.stale || fresh.payload != "21.5" {
		t.Fatalf("first notification delivered as %+v", fresh)
	}
	r.send(Confirmable, 101, 3, "20.5") // sent before 5, arrives after it
	old := r.delivered()
	if old.seq != 3 || !old.stale || old.payload != "20.5" {
		t.Fatalf("reordered notification delivered as %+v, want seq 3 stale", old)
	}
	if s := r.ep.Stats(); s.StaleNotifications != 1 || s.Notifications != 2 {
		t.Fatalf("stats %+v: want 2 notifications, 1 stale", s)
	}
	// Neither is acknowledged while its consumer holds it, and their
	// retransmissions get nothing and are not delivered again.
	r.unanswered("both held by the consumer")
	r.send(Confirmable, 100, 5, "21.5")
	r.send(Confirmable, 101, 3, "20.5")
	waitStat(t, "two retransmissions deduplicated", func() bool { return r.ep.Stats().Duplicates == 2 })
	r.unanswered("retransmissions while held")
	r.nothingDelivered("retransmissions while held")

	// Completed in the other order: each ACK follows its own completion.
	old.done(nil)
	if mid := r.ack(); mid != 101 {
		t.Fatalf("ACK of message %d after the stale one was stored, want 101", mid)
	}
	r.unanswered("the fresh one still held")
	fresh.done(nil)
	if mid := r.ack(); mid != 100 {
		t.Fatalf("ACK of message %d, want 100", mid)
	}
	// A retransmission now gets the same ACK from the deduplication
	// cache (RFC 7252 §4.5) and no second delivery.
	r.send(Confirmable, 101, 3, "20.5")
	if mid := r.ack(); mid != 101 {
		t.Fatalf("retransmission answered for message %d, want 101", mid)
	}
	r.send(Confirmable, 100, 5, "21.5")
	if mid := r.ack(); mid != 100 {
		t.Fatalf("retransmission answered for message %d, want 100", mid)
	}
	r.nothingDelivered("retransmissions after the ACKs")
	r.unanswered("after the retransmissions")

	// The stale one did not move the freshness state back to 3: 4 is
	// still older than 5 (non-confirmable alike), 6 is newer.
	r.send(NonConfirmable, 102, 4, "21.0")
	if d := r.delivered(); d.seq != 4 || !d.stale {
		t.Fatalf("NON seq 4 after 5 delivered as %+v, want stale", d)
	} else {
		d.done(nil)
	}
	r.send(NonConfirmable, 103, 6, "22.0")
	if d := r.delivered(); d.seq != 6 || d.stale {
		t.Fatalf("NON seq 6 delivered as %+v, want fresh", d)
	} else {
		d.done(nil)
	}
	r.unanswered("non-confirmable notifications")
	if s := r.ep.Stats(); s.StaleNotifications != 2 || s.Notifications != 4 {
		t.Fatalf("stats %+v: want 4 notifications, 2 stale", s)
	}
}

// TestStaleNotificationRefusedIsRetried: a stale notification its
// consumer could not store is left unacknowledged, like a fresh one, and
// its retransmission is delivered again, still stale; a refused fresh
// notification whose retransmission comes after a newer one was delivered
// is stale by then.
func TestStaleNotificationRefusedIsRetried(t *testing.T) {
	r := newStaleRig(t)
	r.stored(200, 10, "a", false)

	r.send(Confirmable, 201, 9, "b")
	d := r.delivered()
	if !d.stale {
		t.Fatalf("seq 9 after 10 delivered as %+v", d)
	}
	d.done(errors.New("disk full"))
	r.unanswered("stale notification refused by its consumer")
	r.stored(201, 9, "b", true) // the retransmission of the refused stale notification

	// Fresh 11 refused; 12 delivered and stored; 11 comes again.
	r.send(Confirmable, 202, 11, "c")
	d = r.delivered()
	if d.stale {
		t.Fatalf("seq 11 delivered stale")
	}
	d.done(errors.New("queue full"))
	r.stored(203, 12, "d", false)
	r.stored(202, 11, "c", true) // the retransmission of 11, after 12
	r.nothingDelivered("end")
	r.unanswered("end")
	// Counted once each: 9, and 11 once it came after 12.
	if s := r.ep.Stats(); s.StaleNotifications != 2 {
		t.Fatalf("%d stale notifications counted, want 2", s.StaleNotifications)
	}
}
