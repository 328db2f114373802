package appliance

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// An Update is kept as an "updated" event once per updateEventEvery, as a
// Seen once per store.SeenEvery between them, and not at all otherwise;
// an uplink in between (a notification) changes none of that.
func TestUpdateNoteKeepsOneEventPerInterval(t *testing.T) {
	l := &lifecycle{uplink: map[string]uplinkState{}}
	t0 := time.Now()
	// After a restart the last event is not known: the first Update is one.
	if ev, seen := l.updateNote("restored", t0); !ev || seen {
		t.Fatalf("first Update after a restart: event %v, seen %v; want an event", ev, seen)
	}
	l.registeredNow("dev", t0, true)
	steps := []struct {
		at          time.Duration
		event, seen bool
	}{
		{time.Second, false, false},
		{store.SeenEvery, false, true},
		{store.SeenEvery + time.Second, false, false},
		{2 * store.SeenEvery, false, true},
		{updateEventEvery - time.Second, false, true},
		{updateEventEvery, true, false},
		{updateEventEvery + store.SeenEvery - time.Second, false, false},
		{updateEventEvery + store.SeenEvery, false, true},
		{2 * updateEventEvery, true, false},
	}
	for _, s := range steps {
		l.sawUplink(&server.Registration{Endpoint: "dev"})
		if ev, seen := l.updateNote("dev", t0.Add(s.at)); ev != s.event || seen != s.seen {
			t.Errorf("Update %v after the Register: event %v, seen %v; want %v, %v", s.at, ev, seen, s.event, s.seen)
		}
	}
	// What the store refused is asked for again at the next Update.
	t1 := t0.Add(3 * updateEventEvery)
	if ev, _ := l.updateNote("dev", t1); !ev {
		t.Fatal("no event due")
	}
	l.unnote("dev", true)
	if ev, _ := l.updateNote("dev", t1.Add(time.Second)); !ev {
		t.Error("an event the store refused is not tried again")
	}
	if _, seen := l.updateNote("dev", t1.Add(store.SeenEvery+time.Second)); !seen {
		t.Fatal("no Seen due")
	}
	l.unnote("dev", false)
	if ev, seen := l.updateNote("dev", t1.Add(store.SeenEvery+2*time.Second)); ev || !seen {
		t.Errorf("after a refused Seen: event %v, seen %v; want a Seen only", ev, seen)
	}
}

// countEvents flushes the ingestion queue and counts ep's events of kind.
func countEvents(t *testing.T, db *store.DB, ep, kind string) int {
	t.Helper()
	ctx := context.Background()
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs, err := db.Events(ctx, store.EventQuery{Endpoint: ep, Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

// withUpdateClock sets the clock the lifecycle decides by how often an
// Update is kept.
func withUpdateClock(now func() time.Time) Option { return func(a *Appliance) { a.now = now } }

// Through the product: Updates right after a Register queue nothing, one
// store.SeenEvery later an Update queues a Seen (last_seen only), and one
// updateEventEvery later an "updated" event. Time is the lifecycle's
// clock, moved by the test; nothing waits for it.
func TestUpdatesKeptOncePerInterval(t *testing.T) {
	var offset atomic.Int64
	t0 := time.Now()
	ta := startAppliance(t, testConfig(t), withUpdateClock(func() time.Time { return t0.Add(time.Duration(offset.Load())) }))
	db := ta.a.db
	d := newAckDevice(t, ta.a.Addrs().CoAP, coap.DefaultConfig())
	d.register(t, "kept-dev")
	eventually(t, "the registration's uplink told", func() bool { return ta.a.disp().uplinks.Load() > 0 })
	updated := func() int { return countEvents(t, db, "kept-dev", store.EventUpdated) }
	// Each Update's batch, if any, is queued before its 2.04.
	step := func(name string, advance time.Duration, wantBatches uint64, wantEvents int) {
		t.Helper()
		offset.Add(int64(advance))
		before := db.Stats().Accepted
		d.update(t)
		if n := db.Stats().Accepted - before; n != wantBatches {
			t.Errorf("%s: %d batches queued, want %d", name, n, wantBatches)
		}
		if n := updated(); n != wantEvents {
			t.Errorf("%s: %d \"updated\" events, want %d", name, n, wantEvents)
		}
	}
	step("an Update just after the Register", 0, 0, 0)
	step("an Update SeenEvery later", store.SeenEvery, 1, 0)
	step("an Update a second after that", time.Second, 0, 0)
	step("an Update updateEventEvery after the Register", updateEventEvery, 1, 1)
	step("an Update right after that event", time.Second, 0, 1)
}
