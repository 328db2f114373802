package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// A Seen moves last_seen, at most once per SeenEvery, and stores nothing
// else: no event, no reading, no endpoint row for an unknown name.
func TestSeenMovesLastSeenOnly(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	runWriter(t, d)
	notes, cancel := d.Subscribe(16)
	defer cancel()
	t0 := c.now().Truncate(time.Millisecond)
	if err := d.RecordRegistration(ctx, "dev", RegRegistered, t0, ""); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if n := nextNote(t, notes); n.Event != EventRegistered || n.EventID == 0 {
		t.Fatalf("registration note: %+v", n)
	}
	before := d.Stats()

	// Sooner than SeenEvery after the last write: no transaction at all.
	if err := d.Seen(ctx, "dev", t0.Add(SeenEvery/2)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	st := d.Stats()
	if st.Transactions != before.Transactions || st.Committed != before.Committed+1 || st.Accepted != st.Committed {
		t.Fatalf("a Seen within SeenEvery: %d transactions, %d committed of %d accepted (before %d, %d)",
			st.Transactions, st.Committed, st.Accepted, before.Transactions, before.Committed)
	}
	if e, err := d.Endpoint(ctx, "dev"); err != nil || !e.LastSeen.Equal(t0) {
		t.Fatalf("last_seen after an early Seen: %v %v, want %v", e.LastSeen, err, t0)
	}

	// SeenEvery later: last_seen is written, and nothing else.
	later := t0.Add(SeenEvery + time.Second)
	if err := d.Seen(ctx, "dev", later); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if e, err := d.Endpoint(ctx, "dev"); err != nil || !e.LastSeen.Equal(later) {
		t.Fatalf("last_seen: %v %v, want %v", e.LastSeen, err, later)
	}
	if st := d.Stats(); st.Transactions != before.Transactions+1 || st.CommittedRecords != before.CommittedRecords {
		t.Fatalf("a due Seen: %d transactions (want %d), %d readings (want %d)",
			st.Transactions, before.Transactions+1, st.CommittedRecords, before.CommittedRecords)
	}
	if evs, err := d.Events(ctx, EventQuery{Endpoint: "dev"}); err != nil || len(evs) != 1 {
		t.Fatalf("events after two Seen: %d %v, want the registration only", len(evs), err)
	}
	if _, err := d.CountReadings(ctx, "dev", lwm2m.NewPath(RegistrationObject, 0, RegUpdated), t0, t0.Add(time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update readings: %v, want no such series", err)
	}
	// Subscribers (the live view) hear of both, as updates with no event.
	for i := range 2 {
		if n := nextNote(t, notes); n.Endpoint != "dev" || n.Event != EventUpdated || n.EventID != 0 || len(n.Records) != 0 {
			t.Fatalf("note %d of a Seen: %+v", i, n)
		}
	}

	// An endpoint the store does not hold gets no row.
	if err := d.Seen(ctx, "ghost", later); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if _, err := d.Endpoint(ctx, "ghost"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Seen of an unknown endpoint: %v, want ErrNotFound", err)
	}
}

// A Seen carries nothing: one with readings or an event is refused.
func TestSeenWithDataRefused(t *testing.T) {
	d := openTest(t)
	r := []lwm2m.Record{{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(1)}}
	for _, b := range []Batch{
		{Endpoint: "dev", Seen: true, Records: r},
		{Endpoint: "dev", Seen: true, Event: EventComposite},
	} {
		if err := d.Ingest(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("Ingest(%+v): %v, want ErrInvalid", b, err)
		}
	}
	if err := d.Seen(context.Background(), "", time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("Seen without endpoint: %v, want ErrInvalid", err)
	}
}
