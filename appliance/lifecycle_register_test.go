package appliance

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/store"
)

// TestRegisterEventsKeptOncePerInterval (issue 15): a device that
// registers again while it is registered gets a "registered" event at
// most once per registerEventEvery; a Register after a de-registration
// always gets one, and flownexus_registrations_total counts every
// Register. Time is the lifecycle's clock, moved by the test; nothing
// waits for it.
func TestRegisterEventsKeptOncePerInterval(t *testing.T) {
	var offset atomic.Int64
	t0 := time.Now()
	ta := startAppliance(t, testConfig(t), withUpdateClock(func() time.Time { return t0.Add(time.Duration(offset.Load())) }))
	db := ta.a.db
	d := newAckDevice(t, ta.a.Addrs().CoAP, coap.DefaultConfig())
	registered := func() int { return countEvents(t, db, "loop-dev", store.EventRegistered) }
	// register returns once the appliance has observed the device, so
	// the registration is live when the next Register comes.
	step := func(name string, advance time.Duration, want int) {
		t.Helper()
		offset.Add(int64(advance))
		d.register(t, "loop-dev")
		if n := registered(); n != want {
			t.Errorf("%s: %d \"registered\" events, want %d", name, n, want)
		}
	}
	step("the first Register", 0, 1)
	step("a Register again at once", 0, 1)
	step("and a second later", time.Second, 1)
	step("registerEventEvery after the kept one", registerEventEvery, 2)
	step("a second after that", time.Second, 2)
	d.deregister(t)
	step("a Register after a de-registration", time.Second, 3)
	if n := ta.metric("flownexus_registrations_total"); n != 6 {
		t.Errorf("flownexus_registrations_total %v, want all 6 Registers", n)
	}
	row, err := db.Endpoint(context.Background(), "loop-dev")
	if err != nil || !row.Online || row.RegistrationID != strings.Join(d.loc[1:], "/") {
		t.Errorf("endpoint row %+v (%v), want online with the last registration %v", row, err, d.loc)
	}
}
