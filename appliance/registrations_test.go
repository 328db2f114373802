package appliance

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

// TestRegStoreWritesAndBatches: registration changes and observations are
// written at once; an Update that changes nothing is held and written with
// the next batch; what is saved comes back through restoreRegistrations,
// expired registrations excepted.
func TestRegStoreWritesAndBatches(t *testing.T) {
	ctx := context.Background()
	db := openTestStore(t)
	for _, n := range []string{"dev-1", "old-1"} {
		if _, err := db.UpsertEndpoint(ctx, store.Endpoint{Name: n, Online: true, Lifetime: 60}); err != nil {
			t.Fatal(err)
		}
	}
	p := newRegStore(db, testLogger())
	now := time.Now()
	reg := &server.Registration{ID: "r1", Endpoint: "dev-1", Lifetime: time.Hour, LwM2MVersion: "1.1", Binding: "U",
		Peer:     coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5000"), Session: 42, Identity: "dev-1"},
		Listener: "127.0.0.1:5684", Links: `</>;rt="oma.lwm2m",</3/0>,</3303/0>`, RegisteredAt: now, LastUpdate: now}
	p.SaveRegistration(reg)
	p.SaveRegistration(&server.Registration{ID: "o1", Endpoint: "old-1", Lifetime: time.Minute, Links: "</3/0>",
		RegisteredAt: now.Add(-time.Hour), LastUpdate: now.Add(-time.Hour)})
	p.SaveObservation(&server.Observation{ID: "0102030405060708", Endpoint: "dev-1", RegistrationID: "r1",
		Paths: []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700")}, Format: lwm2m.FormatNone, Started: now})

	touched := *reg
	touched.LastUpdate = now.Add(time.Minute)
	p.TouchRegistration(&touched)
	regs, _, _ := db.Registrations(ctx)
	if len(regs) != 2 || !regs[0].LastUpdate.Equal(now.Truncate(time.Millisecond)) {
		t.Fatalf("a touch was written at once: %+v", regs)
	}
	p.flushTouches()
	regs, _, _ = db.Registrations(ctx)
	if !regs[0].LastUpdate.Equal(touched.LastUpdate.Truncate(time.Millisecond)) {
		t.Fatalf("touch not written by the batch: %v", regs[0].LastUpdate)
	}

	srv := server.New(server.DefaultConfig())
	defer srv.Close()
	restored, err := restoreRegistrations(ctx, db, srv, 30*time.Second, testLogger())
	if err != nil || len(restored) != 1 {
		t.Fatalf("restored %+v: %v", restored, err)
	}
	got := restored[0]
	if got.ID != "r1" || got.Peer != reg.Peer || got.Listener != reg.Listener || len(got.Objects) != 2 ||
		len(srv.Observations("dev-1")) != 1 {
		t.Fatalf("restored as %+v", got)
	}
	if e, _ := db.Endpoint(ctx, "old-1"); e.Online {
		t.Fatal("a registration that expired while stopped is shown online")
	}
	if e, _ := db.Endpoint(ctx, "dev-1"); !e.Online {
		t.Fatal("a restored registration is shown offline")
	}
	p.DeleteObservation(srv.Observations("dev-1")[0])
	p.DeleteRegistration(got)
	if regs, obs, _ := db.Registrations(ctx); len(regs) != 0 || len(obs) != 0 {
		t.Fatalf("after deletes: %+v %+v", regs, obs)
	}
}

// TestRegStoreKeepsTouchesItCouldNotWrite: Update times that a flush could
// not write stay for the next flush (a newer Update of the same
// registration wins), and a Run whose ctx is already cancelled still
// writes what it holds before returning.
func TestRegStoreKeepsTouchesItCouldNotWrite(t *testing.T) {
	ctx := context.Background()
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "flownexus.db")
	open := func() *store.DB {
		db, err := store.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	if _, err := db.UpsertEndpoint(ctx, store.Endpoint{Name: "dev-1", Online: true, Lifetime: 60}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	reg := &server.Registration{ID: "r1", Endpoint: "dev-1", Lifetime: time.Hour, Links: "</3/0>", RegisteredAt: now, LastUpdate: now}
	p := newRegStore(db, testLogger())
	p.SaveRegistration(reg)
	touched := *reg
	touched.LastUpdate = now.Add(time.Minute)
	p.TouchRegistration(&touched)

	db.Close() // the flush fails
	p.flushTouches()
	p.mu.Lock()
	kept := p.touched["dev-1"]
	p.mu.Unlock()
	if !kept.LastUpdate.Equal(touched.LastUpdate) {
		t.Fatalf("a failed flush dropped the Update time: kept %+v", kept)
	}

	db = open()
	defer db.Close()
	p.db = db
	runCtx, cancel := context.WithCancel(ctx)
	cancel()
	if err := p.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	regs, _, err := db.Registrations(ctx)
	if err != nil || len(regs) != 1 || !regs[0].LastUpdate.Equal(touched.LastUpdate) {
		t.Fatalf("after Run on a cancelled ctx: %+v %v", regs, err)
	}
}

// TestRegisterWritesOnce: a Register writes its endpoint row and its
// registration in one synchronous write, and the server's SaveRegistration
// of the same registration that follows writes nothing more; a later
// change of that registration is written again (issue 15).
func TestRegisterWritesOnce(t *testing.T) {
	ctx := context.Background()
	db := openTestStore(t)
	p := newRegStore(db, testLogger())
	now := time.Now()
	reg := &server.Registration{ID: "r1", Endpoint: "dev-1", Lifetime: time.Hour, LwM2MVersion: "1.1", Binding: "U",
		Peer: coap.Peer{Addr: netip.MustParseAddrPort("127.0.0.1:5000")}, Links: "</3/0>", RegisteredAt: now, LastUpdate: now}
	writes := func() uint64 { return db.Stats().Writes }
	w0 := writes()
	row, err := p.register(ctx, store.Endpoint{Name: "dev-1", RegistrationID: "r1", Online: true, Lifetime: 3600}, reg, true)
	if err != nil || row.Name != "dev-1" || row.RegistrationID != "r1" || !row.Online {
		t.Fatalf("register: %+v %v", row, err)
	}
	p.SaveRegistration(reg)
	if n := writes() - w0; n != 1 {
		t.Fatalf("%d synchronous writes for a Register, want 1", n)
	}
	regs, _, err := db.Registrations(ctx)
	if err != nil || len(regs) != 1 || regs[0].ID != "r1" {
		t.Fatalf("saved registrations %+v: %v", regs, err)
	}
	moved := *reg
	moved.Peer.Addr = netip.MustParseAddrPort("127.0.0.1:5001")
	p.SaveRegistration(&moved)
	if n := writes() - w0; n != 2 {
		t.Fatalf("a changed registration was not written again: %d writes", n)
	}
	if regs, _, _ := db.Registrations(ctx); len(regs) != 1 || regs[0].Address != "127.0.0.1:5001" {
		t.Fatalf("after the change: %+v", regs)
	}
}

// openTestStore opens a store in a fresh directory, closed when the test
// ends.
func openTestStore(t *testing.T) *store.DB {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "flownexus.db")
	db, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
