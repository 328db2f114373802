package appliance

import (
	"testing"
	"time"

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
	l.registeredNow("dev", t0)
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
}
