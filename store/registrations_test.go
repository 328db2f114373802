package store

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

func savedReg(ep, id string, at time.Time) Registration {
	return Registration{Endpoint: ep, ID: id, Lifetime: 300 * time.Second, LwM2MVersion: "1.1", Binding: "UQ", QueueMode: true,
		SMSNumber: "+100", ObjectLinks: `</>;rt="oma.lwm2m",</3/0>,</3303/0>`, Address: "127.0.0.1:5000",
		DTLSSession: 1<<63 + 5, Identity: "psk-" + ep, Listener: "127.0.0.1:5684", RegisteredAt: at, LastUpdate: at}
}

func addEndpoint(t *testing.T, d *DB, name string, online bool) {
	t.Helper()
	if _, err := d.UpsertEndpoint(context.Background(), Endpoint{Name: name, Online: online, Lifetime: 300}); err != nil {
		t.Fatal(err)
	}
}

// TestRegistrationRoundTrip: what is saved comes back field for field,
// observations with it; replacing the registration ends its observations;
// deleting an older id leaves a newer registration alone.
func TestRegistrationRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	addEndpoint(t, d, "dev-1", true)
	r := savedReg("dev-1", "r1", c.now())
	if err := d.SaveRegistration(ctx, r); err != nil {
		t.Fatal(err)
	}
	single := Observation{Token: "0102030405060708", Endpoint: "dev-1", RegistrationID: "r1",
		Paths: []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700")}, Format: lwm2m.FormatNone, Started: c.now()}
	comp := Observation{Token: "a1a2a3a4a5a6a7a8", Endpoint: "dev-1", RegistrationID: "r1", Composite: true,
		Paths: []lwm2m.Path{lwm2m.MustParsePath("/3303/0"), lwm2m.MustParsePath("/3/0/9")}, Format: lwm2m.FormatSenMLCBOR, Started: c.now()}
	for _, o := range []Observation{single, comp} {
		if err := d.SaveObservation(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	regs, obs, err := d.Registrations(ctx)
	if err != nil || len(regs) != 1 || len(obs) != 2 {
		t.Fatalf("read back: %+v %+v %v", regs, obs, err)
	}
	if g := regs[0]; g.Endpoint != r.Endpoint || g.ID != r.ID || g.Lifetime != r.Lifetime || g.LwM2MVersion != r.LwM2MVersion ||
		g.Binding != r.Binding || !g.QueueMode || g.SMSNumber != r.SMSNumber || g.ObjectLinks != r.ObjectLinks ||
		g.Address != r.Address || g.DTLSSession != r.DTLSSession || g.Identity != r.Identity || g.Listener != r.Listener ||
		!g.RegisteredAt.Equal(r.RegisteredAt) || !g.LastUpdate.Equal(r.LastUpdate) {
		t.Fatalf("registration read back as %+v, saved %+v", g, r)
	}
	byTok := map[string]Observation{obs[0].Token: obs[0], obs[1].Token: obs[1]}
	if g := byTok[comp.Token]; !g.Composite || len(g.Paths) != 2 || g.Paths[1] != comp.Paths[1] || g.Format != lwm2m.FormatSenMLCBOR {
		t.Fatalf("composite observation read back as %+v", g)
	}
	if g := byTok[single.Token]; g.Composite || len(g.Paths) != 1 || g.Paths[0] != single.Paths[0] || g.Format != lwm2m.FormatNone {
		t.Fatalf("observation read back as %+v", g)
	}

	// An observation of another registration is refused.
	bad := single
	bad.Token, bad.RegistrationID = "0909", "r0"
	if err := d.SaveObservation(ctx, bad); !errors.Is(err, ErrNotFound) {
		t.Fatalf("observation of an unknown registration: %v", err)
	}
	if err := d.SaveObservation(ctx, Observation{Endpoint: "dev-1", RegistrationID: "r1"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("observation without token: %v", err)
	}
	if err := d.SaveRegistration(ctx, Registration{Endpoint: "dev-1"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("registration without id: %v", err)
	}
	if err := d.SaveRegistration(ctx, savedReg("nobody", "x", c.now())); !errors.Is(err, ErrNotFound) {
		t.Fatalf("registration of an unknown endpoint: %v", err)
	}

	// A new Register replaces the registration and ends its observations;
	// an older one arriving late does not overwrite it.
	c.add(time.Minute)
	if err := d.SaveRegistration(ctx, savedReg("dev-1", "r2", c.now())); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveRegistration(ctx, savedReg("dev-1", "r1", c.now().Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	regs, obs, _ = d.Registrations(ctx)
	if len(regs) != 1 || regs[0].ID != "r2" || len(obs) != 0 {
		t.Fatalf("after replace: %+v %+v", regs, obs)
	}
	if err := d.DeleteRegistration(ctx, "dev-1", "r1"); err != nil {
		t.Fatal(err)
	}
	if regs, _, _ = d.Registrations(ctx); len(regs) != 1 {
		t.Fatal("deleting an old id removed the current registration")
	}
	o := single
	o.RegistrationID = "r2"
	if err := d.SaveObservation(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteObservation(ctx, o.Token); err != nil {
		t.Fatal(err)
	}
	if err := d.SaveObservation(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteRegistration(ctx, "dev-1", "r2"); err != nil {
		t.Fatal(err)
	}
	if regs, obs, _ = d.Registrations(ctx); len(regs) != 0 || len(obs) != 0 {
		t.Fatalf("after delete: %+v %+v", regs, obs)
	}
	// Deleting the endpoint deletes its registration.
	if err := d.SaveRegistration(ctx, savedReg("dev-1", "r3", c.now())); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteEndpoint(ctx, "dev-1"); err != nil {
		t.Fatal(err)
	}
	if regs, _, _ = d.Registrations(ctx); len(regs) != 0 {
		t.Fatalf("registration of a deleted endpoint: %+v", regs)
	}
}

// TestTouchRegistrations: batched touches move the last update forward
// TestSaveEndpointRegistration: one transaction creates the endpoint and
// its registration; a newer registration replaces the saved one and ends
// its observations, an older one changes nothing; a registration of
// another endpoint or without an id is refused.
func TestSaveEndpointRegistration(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	t0 := time.Now().Truncate(time.Millisecond)
	tx0 := d.Stats().Writes
	e, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev", RegistrationID: "r1", Online: true, Lifetime: 300, SecurityMode: ModeNoSec}, savedReg("dev", "r1", t0))
	if err != nil || e.Name != "dev" || e.RegistrationID != "r1" || e.ID == 0 {
		t.Fatalf("first: %+v %v", e, err)
	}
	if n := d.Stats().Writes - tx0; n != 1 {
		t.Fatalf("%d writes, want 1", n)
	}
	if err := d.SaveObservation(ctx, Observation{Token: "aa", Endpoint: "dev", RegistrationID: "r1",
		Paths: []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700")}, Started: t0}); err != nil {
		t.Fatal(err)
	}
	// Registering again: only the registration fields change (the
	// narrow UPDATE, which must still write every one of them).
	e, err = d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev", RegistrationID: "r2", Online: true, Lifetime: 600, SecurityMode: ModeNoSec,
		Address: "127.0.0.1:7000"}, savedReg("dev", "r2", t0.Add(time.Second)))
	if err != nil || e.RegistrationID != "r2" || e.Lifetime != 600 || e.Address != "127.0.0.1:7000" || !e.Online || e.SecurityMode != ModeNoSec {
		t.Fatalf("again: %+v %v", e, err)
	}
	regs, obs, err := d.Registrations(ctx)
	if err != nil || len(regs) != 1 || regs[0].ID != "r2" || len(obs) != 0 {
		t.Fatalf("after the newer one: %+v %+v %v", regs, obs, err)
	}
	if _, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev", RegistrationID: "r0", Online: true, Lifetime: 300}, savedReg("dev", "r0", t0.Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	if regs, _, _ := d.Registrations(ctx); len(regs) != 1 || regs[0].ID != "r2" {
		t.Fatalf("an older registration replaced a newer: %+v", regs)
	}
	// Offline, then registered again: online once more.
	if err := d.SetEndpointOffline(ctx, "dev", t0.Add(2*time.Second), true); err != nil {
		t.Fatal(err)
	}
	e, err = d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev", RegistrationID: "r4", Online: true, Lifetime: 600, SecurityMode: ModeNoSec},
		savedReg("dev", "r4", t0.Add(3*time.Second)))
	if err != nil || !e.Online || e.RegistrationID != "r4" || !e.DeregisteredAt.IsZero() {
		t.Fatalf("after going offline: %+v %v", e, err)
	}
	for _, bad := range []Registration{savedReg("other", "r3", t0), savedReg("dev", "", t0)} {
		if _, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev"}, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
}

// only, and only of the registration id they name.
func TestTouchRegistrations(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	for _, n := range []string{"a", "b"} {
		addEndpoint(t, d, n, true)
		if err := d.SaveRegistration(ctx, savedReg(n, "id-"+n, c.now())); err != nil {
			t.Fatal(err)
		}
	}
	later := c.now().Add(time.Minute)
	err := d.TouchRegistrations(ctx, []RegistrationTouch{
		{Endpoint: "a", ID: "id-a", LastUpdate: later},
		{Endpoint: "b", ID: "old", LastUpdate: later},                  // other id: ignored
		{Endpoint: "a", ID: "id-a", LastUpdate: later.Add(-time.Hour)}, // older: ignored
		{Endpoint: "gone", ID: "id-gone", LastUpdate: later},           // unknown: ignored
	})
	if err != nil {
		t.Fatal(err)
	}
	regs, _, _ := d.Registrations(ctx)
	if !regs[0].LastUpdate.Equal(later) || !regs[1].LastUpdate.Equal(c.now()) {
		t.Fatalf("after touches: %v %v", regs[0].LastUpdate, regs[1].LastUpdate)
	}
	// Saving the same registration again keeps the newer touched time.
	if err := d.SaveRegistration(ctx, savedReg("a", "id-a", c.now())); err != nil {
		t.Fatal(err)
	}
	if regs, _, _ = d.Registrations(ctx); !regs[0].LastUpdate.Equal(later) {
		t.Fatalf("save moved last update back: %v", regs[0].LastUpdate)
	}
}

// TestPruneAndSyncOnline: at start, registrations whose lifetime plus
// grace ran out are dropped and their endpoints shown offline; endpoints
// with a live saved registration are online, the rest offline.
func TestPruneAndSyncOnline(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	start := c.now()
	for _, n := range []string{"fresh", "stale", "unsaved"} {
		addEndpoint(t, d, n, true)
	}
	addEndpoint(t, d, "offline-but-saved", false)
	fresh := savedReg("fresh", "f", start)
	stale := savedReg("stale", "s", start.Add(-10*time.Minute)) // 300 s lifetime
	for _, r := range []Registration{fresh, stale, savedReg("offline-but-saved", "o", start)} {
		if err := d.SaveRegistration(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.SaveObservation(ctx, Observation{Token: "01", Endpoint: "stale", RegistrationID: "s",
		Paths: []lwm2m.Path{lwm2m.MustParsePath("/3/0/9")}, Started: start}); err != nil {
		t.Fatal(err)
	}
	names, err := d.PruneRegistrations(ctx, start, 30*time.Second)
	if err != nil || len(names) != 1 || names[0] != "stale" {
		t.Fatalf("prune: %v %v", names, err)
	}
	// Within lifetime + grace nothing more goes.
	if names, _ := d.PruneRegistrations(ctx, start.Add(320*time.Second), 30*time.Second); len(names) != 0 {
		t.Fatalf("pruned within grace: %v", names)
	}
	regs, obs, _ := d.Registrations(ctx)
	if len(regs) != 2 || len(obs) != 0 {
		t.Fatalf("after prune: %+v %+v", regs, obs)
	}
	n, err := d.SyncOnline(ctx)
	if err != nil || n != 2 {
		t.Fatalf("online after sync: %d %v", n, err)
	}
	for name, want := range map[string]bool{"fresh": true, "offline-but-saved": true, "stale": false, "unsaved": false} {
		if e, _ := d.Endpoint(ctx, name); e.Online != want {
			t.Errorf("%s online = %v, want %v", name, e.Online, want)
		}
	}
}

// TestUpgradeFromSchema3Registrations: a database of the version before
// registrations were saved opens with empty registration tables; its
// online endpoints have no saved registration, so they are shown offline
// until they register (the appliance asks plain-CoAP ones to, once).
func TestUpgradeFromSchema3Registrations(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	raw, err := openRaw(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, raw, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO endpoint(name, online, lifetime, address, created) VALUES ('old-dev', 1, 300, '127.0.0.1:9', 1000)`); err != nil {
		t.Fatal(err)
	}
	var n int
	raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE name = 'lwm2m_registration'`).Scan(&n)
	if n != 0 {
		t.Fatal("schema 3 already has lwm2m_registration")
	}
	raw.Close()

	d := openWith(t, cfg)
	regs, obs, err := d.Registrations(ctx)
	if err != nil || len(regs) != 0 || len(obs) != 0 {
		t.Fatalf("after upgrade: %+v %+v %v", regs, obs, err)
	}
	if online, err := d.SyncOnline(ctx); err != nil || online != 0 {
		t.Fatalf("sync online after upgrade: %d %v", online, err)
	}
	if err := d.SaveRegistration(ctx, savedReg("old-dev", "r1", time.Now())); err != nil {
		t.Fatal(err)
	}
	if online, _ := d.SyncOnline(ctx); online != 1 {
		t.Fatalf("online with a saved registration: %d", online)
	}
}

// BenchmarkTouchRegistrations: one op is one Update's time written in a
// batch of 1,000 (the appliance's steady state, coalesced every 10 s).
func BenchmarkTouchRegistrations(b *testing.B) {
	ctx := context.Background()
	d := openTest(b)
	const fleet = 1000
	now := time.Now()
	for i := range fleet {
		name := "dev-" + strconv.Itoa(i)
		if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: name, Online: true, Lifetime: 300}); err != nil {
			b.Fatal(err)
		}
		if err := d.SaveRegistration(ctx, savedReg(name, "r"+strconv.Itoa(i), now)); err != nil {
			b.Fatal(err)
		}
	}
	batch := make([]RegistrationTouch, fleet)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += fleet {
		at := now.Add(time.Duration(i+1) * time.Millisecond)
		for j := range batch {
			batch[j] = RegistrationTouch{Endpoint: "dev-" + strconv.Itoa(j), ID: "r" + strconv.Itoa(j), LastUpdate: at}
		}
		if err := d.TouchRegistrations(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
}
