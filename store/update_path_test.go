package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRefreshEndpointWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	reg := Endpoint{Name: "dev", RegistrationID: "r1", Online: true, LastSeen: time.Now(), Lifetime: 300, Binding: "U",
		LwM2MVersion: "1.1", ObjectLinks: "</3/0>", Address: "127.0.0.1:5683", RegisteredAt: time.Now(), SecurityMode: ModeNoSec}
	if _, err := d.UpsertEndpoint(ctx, reg); err != nil {
		t.Fatal(err)
	}
	writes := func() uint64 { return d.Stats().EndpointWrites }
	w0 := writes()
	upd := reg
	upd.SecurityMode = "" // what an Update knows
	upd.LastSeen = time.Now().Add(time.Minute)
	if err := d.RefreshEndpoint(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if n := writes() - w0; n != 0 {
		t.Fatalf("unchanged Update wrote %d times", n)
	}
	upd.Lifetime = 600
	if err := d.RefreshEndpoint(ctx, upd); err != nil || writes()-w0 != 1 {
		t.Fatalf("changed Update: %v, writes %d", err, writes()-w0)
	}
	if e, err := d.Endpoint(ctx, "dev"); err != nil || e.Lifetime != 600 || e.SecurityMode != ModeNoSec || !e.LastSeen.Equal(upd.LastSeen.Truncate(time.Millisecond)) {
		t.Fatalf("after refresh: %+v %v", e, err)
	}
	if err := d.RefreshEndpoint(ctx, upd); err != nil || writes()-w0 != 1 {
		t.Fatalf("same again: %v, writes %d", err, writes()-w0)
	}
	// Another write to the row (here: expiry) makes the next Update write.
	if err := d.SetEndpointOffline(ctx, "dev", time.Now(), false); err != nil {
		t.Fatal(err)
	}
	if err := d.RefreshEndpoint(ctx, upd); err != nil || writes()-w0 != 2 {
		t.Fatalf("after offline: %v, writes %d", err, writes()-w0)
	}
	if e, _ := d.Endpoint(ctx, "dev"); !e.Online {
		t.Fatal("Update did not bring the device back online")
	}
	// A deleted endpoint is not recreated by its Update.
	if err := d.DeleteEndpoint(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if err := d.RefreshEndpoint(ctx, upd); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted: %v, want ErrNotFound", err)
	}
	if _, err := d.Endpoint(ctx, "dev"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted endpoint came back: %v", err)
	}
}

func TestQueuedOperationsQueriesOnlyWhenPending(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	for _, ep := range []string{"a", "b"} {
		if _, err := d.CreateEndpoint(ctx, Endpoint{Name: ep}); err != nil {
			t.Fatal(err)
		}
	}
	queries := func() uint64 { return d.Stats().OperationQueries }
	q0 := queries()
	if ops, err := d.QueuedOperations(ctx, "a", 20); err != nil || len(ops) != 0 || queries() != q0 {
		t.Fatalf("nothing pending: %v %v, %d queries", ops, err, queries()-q0)
	}
	op, err := d.CreateOperation(ctx, Operation{Endpoint: "a", Type: "read", Paths: []string{"/3/0/0"}})
	if err != nil {
		t.Fatal(err)
	}
	if ops, err := d.QueuedOperations(ctx, "a", 20); err != nil || len(ops) != 1 || queries() != q0+1 {
		t.Fatalf("one pending: %v %v, %d queries", ops, err, queries()-q0)
	}
	if ops, _ := d.QueuedOperations(ctx, "b", 20); len(ops) != 0 || queries() != q0+1 {
		t.Fatalf("other endpoint queried: %d", queries()-q0)
	}
	// Claimed and retried: queued again, found again.
	if _, err := d.ClaimOperation(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.RetryOperation(ctx, op.ID, "timeout", 3); err != nil {
		t.Fatal(err)
	}
	if ops, _ := d.QueuedOperations(ctx, "a", 20); len(ops) != 1 {
		t.Fatalf("retried operation not found: %v", ops)
	}
	if _, err := d.ClaimOperation(ctx, op.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ConfirmOperation(ctx, op.ID, nil); err != nil {
		t.Fatal(err)
	}
	// One query finds nothing and forgets the endpoint; then none.
	q1 := queries()
	for range 3 {
		if ops, _ := d.QueuedOperations(ctx, "a", 20); len(ops) != 0 {
			t.Fatalf("confirmed operation listed: %v", ops)
		}
	}
	if n := queries() - q1; n != 1 {
		t.Fatalf("%d queries after the queue emptied, want 1", n)
	}
	// Reopened: the set is loaded from the database.
	if _, err := d.CreateOperation(ctx, Operation{Endpoint: "b", Type: "read", Paths: []string{"/3/0/0"}}); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2 := openWith(t, cfg)
	if ops, err := d2.QueuedOperations(ctx, "b", 20); err != nil || len(ops) != 1 {
		t.Fatalf("after reopen: %v %v", ops, err)
	}
}
