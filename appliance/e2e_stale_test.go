package appliance

import (
	"context"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
)

// TestStaleReorderedNotificationStored (issue 13): a device on a bare CoAP
// endpoint sends confirmable notifications whose Observe numbers arrive
// out of order (RFC 7641 §3.4), as when the network reorders them. The
// older one is acknowledged like the others — only once its reading is
// committed — and the reading is in the database; the latest value the
// UI shows stays the newest reading, and /metrics counts the
// out-of-order notification.
func TestStaleReorderedNotificationStored(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	db := ta.a.db
	d := newAckDevice(t, ta.a.Addrs().CoAP, coap.DefaultConfig())
	d.register(t, "stale-dev")
	// The value of the auto-observe's response ("0") is stored first.
	eventually(t, "the observe response's value stored", func() bool { return stored(t, db, "stale-dev", 0) })
	var newest uint32
	var want float64
	for _, n := range []struct {
		seq uint32
		v   float64
	}{{20, 21.5}, {15, 19.25}, {17, 20.75}, {22, 22.5}, {21, 22.25}} {
		if err := d.notify(n.seq, n.v); err != nil {
			t.Fatalf("notification %d: %v", n.seq, err)
		}
		// Acknowledged means stored: no waiting here.
		if !stored(t, db, "stale-dev", n.v) {
			t.Fatalf("notification %d (%v) acknowledged but not stored", n.seq, n.v)
		}
		if n.seq > newest {
			newest, want = n.seq, n.v
		}
		latest, err := db.Latest(context.Background(), "stale-dev")
		if err != nil {
			t.Fatal(err)
		}
		var got *float64
		for _, r := range latest {
			if r.Path == lwm2m.NewPath(3303, 0, 5700) {
				f := r.Value.Float()
				got = &f
			}
		}
		if got == nil || *got != want {
			t.Fatalf("after notification %d: latest value %v, want the newest %v", n.seq, latest, want)
		}
	}
	if s := ta.a.srv.Stats(); s.CoAP.StaleNotifications != 3 {
		t.Fatalf("%d out-of-order notifications counted, want 3", s.CoAP.StaleNotifications)
	}
	var b strings.Builder
	if err := ta.a.writeMetrics(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\nflownexus_coap_notifications_out_of_order_total 3\n") {
		t.Fatalf("/metrics does not count the 3 out-of-order notifications")
	}
	if st := db.Stats(); st.Refused != 0 || st.Failed != 0 {
		t.Fatalf("store refused or dropped batches: %+v", st)
	}
}
