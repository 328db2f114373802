package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestOperationStateMachineAcrossRestart(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	if _, err := d.CreateOperation(ctx, Operation{Endpoint: "ghost", Type: "read"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	d.UpsertEndpoint(ctx, Endpoint{Name: "dev"})
	if _, err := d.CreateOperation(ctx, Operation{Endpoint: "dev"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no type: %v", err)
	}
	if _, err := d.CreateOperation(ctx, Operation{Endpoint: "dev", Type: "write", Payload: json.RawMessage(`{bad`)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad payload: %v", err)
	}
	w, err := d.CreateOperation(ctx, Operation{Endpoint: "dev", Type: "write", Paths: []string{"/3/0/14"}, Payload: json.RawMessage(`{"value":"+02"}`), Format: "text"})
	if err != nil || w.Status != StatusQueued || w.Attempts != 0 || w.Paths[0] != "/3/0/14" || string(w.Payload) != `{"value":"+02"}` {
		t.Fatalf("create: %+v %v", w, err)
	}
	r, _ := d.CreateOperation(ctx, Operation{Endpoint: "dev", Type: "read", Paths: []string{"/3/0"}})
	x, _ := d.CreateOperation(ctx, Operation{Endpoint: "dev", Type: "execute", Paths: []string{"/3/0/4"}})

	if _, err := d.ConfirmOperation(ctx, w.ID, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("confirm a queued op: %v", err)
	}
	w, err = d.ClaimOperation(ctx, w.ID)
	if err != nil || w.Status != StatusSending || w.Attempts != 1 {
		t.Fatalf("claim: %+v %v", w, err)
	}
	if _, err := d.ClaimOperation(ctx, w.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("double claim: %v", err)
	}
	if _, err := d.ClaimOperation(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("claim unknown: %v", err)
	}
	r, _ = d.ClaimOperation(ctx, r.ID)
	r, err = d.ConfirmOperation(ctx, r.ID, json.RawMessage(`{"values":{"3/0/0":"Acme"}}`))
	if err != nil || r.Status != StatusConfirmed || string(r.Result) != `{"values":{"3/0/0":"Acme"}}` || !r.Final() {
		t.Fatalf("confirm: %+v %v", r, err)
	}
	if _, err := d.FailOperation(ctx, r.ID, "late"); !errors.Is(err, ErrConflict) {
		t.Fatalf("fail a confirmed op: %v", err)
	}

	// Crash-like restart with w in flight: it comes back queued with its
	// attempt kept.
	d.Close()
	d = openWith(t, cfg)
	w, _ = d.Operation(ctx, w.ID)
	if w.Status != StatusQueued || w.Attempts != 1 {
		t.Fatalf("after restart: %+v", w)
	}
	queued, _ := d.Operations(ctx, OperationQuery{Endpoint: "dev", Status: StatusQueued, Oldest: true})
	if len(queued) != 2 || queued[0].ID != w.ID || queued[1].ID != x.ID {
		t.Fatalf("queued after restart: %+v", queued)
	}
	// The 3-attempt rule: attempts 2 and 3 fail, the third ends it.
	w, _ = d.ClaimOperation(ctx, w.ID)
	w, err = d.RetryOperation(ctx, w.ID, "timeout", 0)
	if err != nil || w.Status != StatusQueued || w.Attempts != 2 || w.Error != "timeout" {
		t.Fatalf("retry 2: %+v %v", w, err)
	}
	w, _ = d.ClaimOperation(ctx, w.ID)
	if w.Error != "" {
		t.Fatalf("claim keeps the old error: %+v", w)
	}
	d.Close()
	d = openWith(t, cfg)
	w, _ = d.Operation(ctx, w.ID)
	if w.Status != StatusQueued || w.Attempts != 3 {
		t.Fatalf("after second restart: %+v", w)
	}
	w, _ = d.ClaimOperation(ctx, w.ID)
	w, err = d.RetryOperation(ctx, w.ID, "timeout", DefaultMaxAttempts)
	if err != nil || w.Status != StatusFailed || w.Attempts != 4 {
		t.Fatalf("retry after 3 attempts: %+v %v", w, err)
	}
	x, _ = d.ClaimOperation(ctx, x.ID)
	x, err = d.RequeueOperation(ctx, x.ID, "device went to sleep")
	if err != nil || x.Status != StatusQueued || x.Attempts != 1 {
		t.Fatalf("requeue: %+v %v", x, err)
	}
	x, err = d.FailOperation(ctx, x.ID, "cancelled")
	if err != nil || x.Status != StatusFailed || x.Error != "cancelled" {
		t.Fatalf("cancel: %+v %v", x, err)
	}
	all, _ := d.Operations(ctx, OperationQuery{Endpoint: "dev"})
	if len(all) != 3 || all[0].ID != x.ID {
		t.Fatalf("history newest first: %+v", all)
	}
	failed, _ := d.Operations(ctx, OperationQuery{Status: StatusFailed})
	if len(failed) != 2 {
		t.Fatalf("failed: %d", len(failed))
	}
	page, _ := d.Operations(ctx, OperationQuery{Endpoint: "dev", BeforeID: x.ID, Limit: 1})
	if len(page) != 1 || page[0].ID != r.ID {
		t.Fatalf("page: %+v", page)
	}
	if n, _ := d.RequeueSending(ctx); n != 0 {
		t.Fatalf("requeued %d", n)
	}
	if n, err := d.DeleteOperationsBefore(ctx, d.now().Add(time.Millisecond)); err != nil || n != 3 {
		t.Fatalf("DeleteOperationsBefore: %d %v", n, err)
	}
}
