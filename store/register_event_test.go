package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// quietConfig is testConfig with compaction and retention out of the
// way, so that every transaction the test counts is its own.
func quietConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.CompactInterval = time.Hour
	cfg.RetentionInterval = time.Hour
	return cfg
}

// registeredEvents lists ep's "registered" events.
func registeredEvents(t *testing.T, d *DB, ep string) []Event {
	t.Helper()
	evs, err := d.Events(context.Background(), EventQuery{Endpoint: ep, Kind: EventRegistered})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestRegisterCommitsItsEvent: a Register's endpoint row, saved
// registration and "registered" event are one transaction (issue 15: the
// event used to follow in a commit of its own, which wrote the endpoint's
// pages again), the event is there when SaveEndpointRegistration returns,
// and nothing goes through the ingestion queue.
func TestRegisterCommitsItsEvent(t *testing.T) {
	ctx := context.Background()
	d := openWith(t, quietConfig(t))
	runWriter(t, d)
	writerTakesJobs(t, d)
	at := time.Now().Truncate(time.Millisecond)
	for i, id := range []string{"r1", "r2"} { // a new endpoint, then a known one
		before := d.Stats()
		r := savedReg("dev-1", id, at.Add(time.Duration(i)*time.Second))
		if _, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev-1", RegistrationID: id, Online: true, Lifetime: 300}, r); err != nil {
			t.Fatal(err)
		}
		after := d.Stats()
		if n := after.Transactions - before.Transactions; n != 1 {
			t.Errorf("Register %s: %d transactions, want 1", id, n)
		}
		// The event counts as a batch accepted and committed, as it did
		// when it went through the queue.
		if a, c := after.Accepted-before.Accepted, after.Committed-before.Committed; a != 1 || c != 1 || after.QueueLen != 0 {
			t.Errorf("Register %s: %d batches accepted, %d committed, %d queued; want 1, 1, 0", id, a, c, after.QueueLen)
		}
		evs := registeredEvents(t, d, "dev-1")
		if len(evs) != i+1 {
			t.Fatalf("Register %s: %d registered events when it returned, want %d", id, len(evs), i+1)
		}
		ev := evs[0]
		if !ev.Time.Equal(r.RegisteredAt) || ev.Detail != r.Address || len(ev.Resources) != 1 || ev.Resources[0].Path != "/10240/0/0" {
			t.Errorf("Register %s: event %+v, want one at %v from %s with /10240/0/0", id, ev, r.RegisteredAt, r.Address)
		}
	}
}

// TestFollowUpOnlyAfterItsWrite: a write that fails stores nothing of what
// was to follow it, neither its own row nor the follow-up's event, and the
// endpoint's later writes still go through.
func TestFollowUpOnlyAfterItsWrite(t *testing.T) {
	ctx := context.Background()
	d := openWith(t, quietConfig(t))
	runWriter(t, d)
	writerTakesJobs(t, d)
	refused := errors.New("refused on purpose")
	fctx := withFollowUp(ctx, registrationEvent("dev-f", RegRegistered, time.Now(), "127.0.0.1:1"))
	err := d.tx(fctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO endpoint(name, created) VALUES ('dev-f', 0)`); err != nil {
			return err
		}
		return refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("tx: %v, want the write's own error", err)
	}
	if _, err := d.Endpoint(ctx, "dev-f"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the failed write's endpoint row: %v, want ErrNotFound", err)
	}
	if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: "dev-f", Online: true, Lifetime: 300}); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if evs := registeredEvents(t, d, "dev-f"); len(evs) != 0 {
		t.Errorf("%d events stored after a failed write, want 0", len(evs))
	}
}

// TestFollowUpWithoutWriter: without Run (start-up, command-line tools)
// the write commits at once and its event goes through the queue, stored
// by the next Flush or Close.
func TestFollowUpWithoutWriter(t *testing.T) {
	ctx := context.Background()
	cfg := quietConfig(t)
	d := openWith(t, cfg)
	r := savedReg("dev-1", "r1", time.Now())
	if _, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev-1", RegistrationID: "r1", Online: true, Lifetime: 300}, r); err != nil {
		t.Fatal(err)
	}
	if n := d.Stats().Accepted; n != 1 {
		t.Fatalf("%d batches queued, want the event's", n)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = openWith(t, cfg)
	if evs := registeredEvents(t, d, "dev-1"); len(evs) != 1 {
		t.Fatalf("%d registered events after Close, want 1", len(evs))
	}
}

// TestJobsGroupOnOneCore: on one core (GOMAXPROCS 1, as on a Pi-sized
// site or the benchmark's pinned server), writes queued together share a
// transaction. The goroutine that queues a job wakes the writer to run
// next; without a yield the writer took that one job alone, and 32
// Registers made 32 transactions (issue 15).
func TestJobsGroupOnOneCore(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ctx := context.Background()
	d := openWith(t, quietConfig(t))
	runWriter(t, d)
	writerTakesJobs(t, d)
	const n = 32
	start := make(chan struct{})
	errs := make(chan error, n)
	before := d.Stats().Transactions
	for i := range n {
		go func() {
			<-start
			ep := fmt.Sprintf("dev-%d", i)
			_, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: ep, RegistrationID: "r1", Online: true, Lifetime: 300}, savedReg(ep, "r1", time.Now()))
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if tx := d.Stats().Transactions - before; tx > n/4 {
		t.Errorf("%d Registers queued at once took %d transactions, want at most %d", n, tx, n/4)
	}
}

// TestReRegistrationWritesNoEvent: SaveEndpointReRegistration writes the
// endpoint row and the saved registration in one transaction, like
// SaveEndpointRegistration, and no "registered" event: no event, reading
// or batch at all.
func TestReRegistrationWritesNoEvent(t *testing.T) {
	ctx := context.Background()
	d := openWith(t, quietConfig(t))
	runWriter(t, d)
	writerTakesJobs(t, d)
	at := time.Now().Truncate(time.Millisecond)
	if _, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev-1", RegistrationID: "r1", Online: true, Lifetime: 300}, savedReg("dev-1", "r1", at)); err != nil {
		t.Fatal(err)
	}
	before := d.Stats()
	r := savedReg("dev-1", "r2", at.Add(time.Second))
	e, err := d.SaveEndpointReRegistration(ctx, Endpoint{Name: "dev-1", RegistrationID: "r2", Online: true, Lifetime: 600}, r)
	if err != nil {
		t.Fatal(err)
	}
	after := d.Stats()
	if n := after.Transactions - before.Transactions; n != 1 {
		t.Errorf("%d transactions, want 1", n)
	}
	if a := after.Accepted - before.Accepted; a != 0 {
		t.Errorf("%d batches accepted, want 0 (no event)", a)
	}
	if evs := registeredEvents(t, d, "dev-1"); len(evs) != 1 {
		t.Errorf("%d registered events, want the first Register's only", len(evs))
	}
	if e.RegistrationID != "r2" || e.Lifetime != 600 {
		t.Errorf("endpoint row %+v, want registration r2 with lifetime 600", e)
	}
	saved, _, err := d.Registrations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(saved) != 1 || saved[0].ID != "r2" {
		t.Errorf("saved registrations %+v, want r2 alone", saved)
	}
	bad := r
	bad.ID = ""
	if _, err := d.SaveEndpointReRegistration(ctx, Endpoint{Name: "dev-1"}, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("a registration without an id: %v, want ErrInvalid", err)
	}
}
