package appliance

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// rawDevice is a device on a bare UDP socket, so that the test chooses
// every message: here, how the answer to the appliance's observe travels.
type rawDevice struct {
	t   *testing.T
	c   *net.UDPConn
	mid uint16
	obs *coap.Message // the appliance's observe request, once seen
}

func dialRawDevice(t *testing.T, addr string) *rawDevice {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawDevice{t: t, c: c, mid: 0x4000}
}

func (d *rawDevice) nextMID() uint16 {
	d.mid++
	return d.mid
}

func (d *rawDevice) send(m *coap.Message) {
	d.t.Helper()
	b, err := m.Marshal()
	if err != nil {
		d.t.Fatal(err)
	}
	if _, err := d.c.Write(b); err != nil {
		d.t.Fatal(err)
	}
}

// recv reads the next datagram within wait; nil when none came. A
// retransmission of the observe request, already acknowledged or about
// to be, is answered with the empty ACK a device's deduplication cache
// would give and skipped (RFC 7252 §4.5).
func (d *rawDevice) recv(wait time.Duration) *coap.Message {
	d.t.Helper()
	buf := make([]byte, 2048)
	for {
		d.c.SetReadDeadline(time.Now().Add(wait))
		n, err := d.c.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			d.t.Fatal(err)
		}
		m, err := coap.Unmarshal(buf[:n])
		if err != nil {
			d.t.Fatal(err)
		}
		if d.obs != nil && m.Type == coap.Confirmable && m.MessageID == d.obs.MessageID {
			d.send(&coap.Message{Type: coap.Acknowledgement, MessageID: m.MessageID})
			continue
		}
		return m.Clone()
	}
}

// must is recv with a bound that only turns a hang into a failure.
func (d *rawDevice) must(what string) *coap.Message {
	d.t.Helper()
	m := d.recv(30 * time.Second)
	if m == nil {
		d.t.Fatalf("device got no %s", what)
	}
	return m
}

// register registers with one temperature instance (Core §6.2.1); the
// appliance then observes /3303/0/5700 and nothing else (no object 3 to
// read, no composite object, no Event Log).
func (d *rawDevice) register(ep string) {
	d.t.Helper()
	m := &coap.Message{Type: coap.Confirmable, Code: coap.POST, MessageID: d.nextMID(), Token: []byte{0xee, 1},
		Payload: []byte(`</>;rt="oma.lwm2m",</3303/0>`)}
	m.SetPath("/rd")
	for _, q := range []string{"ep=" + ep, "lt=300", "lwm2m=1.1", "b=U"} {
		m.AddQuery(q)
	}
	m.SetContentFormat(40)
	d.send(m)
	for {
		r := d.must("answer to Register")
		if r.Type == coap.Confirmable { // a separate response (§5.2.2)
			d.send(&coap.Message{Type: coap.Acknowledgement, MessageID: r.MessageID})
		}
		if r.Code == coap.Empty {
			continue
		}
		if r.Code != coap.Created {
			d.t.Fatalf("register: %s %s", r.Code, r.Payload)
		}
		return
	}
}

// awaitObserve reads the appliance's observe request of /3303/0/5700.
func (d *rawDevice) awaitObserve() {
	d.t.Helper()
	m := d.must("observe request")
	if v, ok := m.Observe(); m.Type != coap.Confirmable || m.Code != coap.GET || m.Path() != "/3303/0/5700" || !ok || v != 0 {
		d.t.Fatalf("device got %v %s %s, want the observe of /3303/0/5700", m.Type, m.Code, m.Path())
	}
	d.obs = m
}

// ping sends a CoAP ping (RFC 7252 §4.3); its RST must be the next
// datagram the device reads, proving that the appliance sent nothing
// else before it — datagrams between two loopback sockets arrive in the
// order sent.
func (d *rawDevice) ping(what string) {
	d.t.Helper()
	mid := d.nextMID()
	d.send(&coap.Message{Type: coap.Confirmable, MessageID: mid})
	if m := d.must("answer to its ping"); m.Type != coap.Reset || m.MessageID != mid {
		d.t.Fatalf("%s: device got %v %s mid %d before the answer to its ping", what, m.Type, m.Code, m.MessageID)
	}
}

// awaitAck waits for the empty ACK of CON m, retransmitting m as a device
// does (§4.2) while none comes — the appliance refuses a notification
// whose commit failed, and acknowledges its retransmission once stored.
func (d *rawDevice) awaitAck(m *coap.Message) {
	d.t.Helper()
	for range 20 {
		r := d.recv(3 * time.Second)
		if r == nil {
			d.send(m)
			continue
		}
		if r.Type != coap.Acknowledgement || r.Code != coap.Empty || r.MessageID != m.MessageID {
			d.t.Fatalf("device got %v %s mid %d, want the ACK of %d", r.Type, r.Code, r.MessageID, m.MessageID)
		}
		return
	}
	d.t.Fatalf("message %d never acknowledged", m.MessageID)
}

// readings counts the stored readings of 3303/0/5700 equal to v.
func readings(t *testing.T, ta *testAppliance, ep string, v float64) int {
	t.Helper()
	pts, err := ta.a.db.Readings(context.Background(), ep, lwm2m.NewPath(3303, 0, 5700), time.Time{}, time.Now().Add(time.Hour), 100000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pts {
		if p.V.Float() == v {
			n++
		}
	}
	return n
}

// TestSeparateObserveResponseAckAfterCommit: a device answers the
// appliance's auto-observe with an empty ACK and sends the value as a
// separate CON response (RFC 7252 §5.2.2), the first notification of the
// observation (RFC 7641 §3.2). Its ACK must wait for the value's commit,
// like any notification's: another connection holds the database's write
// lock, and the device gets nothing but the answer to its ping until the
// lock is released; when the ACK comes the value is stored, and it is
// stored once. Before, the response was acknowledged on arrival and its
// value stored later by the auto-observe: a kill -9 in between lost it.
func TestSeparateObserveResponseAckAfterCommit(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	db, disp := ta.a.db, ta.a.disp()
	d := dialRawDevice(t, ta.a.Addrs().CoAP)
	d.register("sep-dev")
	d.awaitObserve()
	settled := func() bool {
		st := db.Stats()
		return st.Committed == st.Accepted && st.QueueLen == 0
	}
	eventually(t, "registration settled", settled)

	lock := openDBLock(t, ta.cfg.DataDir)
	lock.hold(t)
	before := db.Stats().AcceptedRecords
	d.send(&coap.Message{Type: coap.Acknowledgement, MessageID: d.obs.MessageID})
	resp := &coap.Message{Type: coap.Confirmable, Code: coap.Content, MessageID: d.nextMID(), Token: d.obs.Token, Payload: []byte("21.5")}
	resp.SetObserve(1)
	resp.SetContentFormat(uint16(lwm2m.FormatText))
	d.send(resp)
	// Handed to the store, which cannot commit it while the lock is
	// held. (Not waiting for the writer to take it: the writer may be
	// waiting for the lock with the observation's save first.)
	eventually(t, "the value queued", func() bool { return db.Stats().AcceptedRecords > before })
	d.ping("value not committed")
	lock.release(t)
	d.awaitAck(resp)
	if n := readings(t, ta, "sep-dev", 21.5); n != 1 {
		t.Fatalf("acknowledged, and %d readings of 21.5 stored, want 1", n)
	}
	// The auto-observe is over (the dispatcher is kicked after it), and
	// nothing else is stored: the value is there once.
	eventually(t, "the registration's work done and committed", func() bool { return disp.uplinks.Load() > 0 && settled() })
	if n := readings(t, ta, "sep-dev", 21.5); n != 1 {
		t.Fatalf("%d readings of 21.5 stored, want 1", n)
	}
}
