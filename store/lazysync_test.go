package store

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// writerSync is the writer connection's PRAGMA synchronous (2 is FULL).
func writerSync(t *testing.T, d *DB) int {
	t.Helper()
	var v int
	if err := d.w.QueryRowContext(context.Background(), `PRAGMA synchronous`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRegistrationWritesSyncLater: a Register's write and an observation
// commit without an fsync of their own, the writer's connection is back
// at FULL after each, the WAL is fsynced once afterwards, and any other
// write commits under FULL, which also covers the registration writes
// before it.
func TestRegistrationWritesSyncLater(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	runWriter(t, d)
	writerTakesJobs(t, d)
	now := time.Now()
	r := savedReg("dev-1", "r1", now)
	if _, err := d.SaveEndpointRegistration(ctx, Endpoint{Name: "dev-1", Online: true, Lifetime: 300}, r); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.LazyCommits != 1 {
		t.Fatalf("%d lazy commits after a Register's write, want 1", st.LazyCommits)
	}
	if v := writerSync(t, d); v != 2 {
		t.Fatalf("writer connection at synchronous=%d after a lazy commit, want 2 (FULL)", v)
	}
	awaitStore(t, "the WAL fsynced", func() bool { return d.Stats().WALSyncs == 1 })

	o := Observation{Token: "0102030405060708", Endpoint: "dev-1", RegistrationID: "r1",
		Paths: []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700")}, Started: now}
	if err := d.SaveObservation(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := d.SetSetting(ctx, "lazy-test", "v"); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.LazyCommits != 2 {
		t.Fatalf("%d lazy commits, want 2: a setting is not registration state", st.LazyCommits)
	}
	if d.walUnsynced.Load() {
		t.Fatal("a FULL commit left earlier registration writes marked unsynced")
	}
	regs, obs, err := d.Registrations(ctx)
	if err != nil || len(regs) != 1 || len(obs) != 1 {
		t.Fatalf("read back: %d registrations, %d observations, %v", len(regs), len(obs), err)
	}
}

// TestRegistrationWritesSyncWithNormal: with synchronous=NORMAL for the
// whole database nothing is told apart.
func TestRegistrationWritesSyncWithNormal(t *testing.T) {
	cfg := testConfig(t)
	cfg.Synchronous = SyncNormal
	d := openWith(t, cfg)
	runWriter(t, d)
	writerTakesJobs(t, d)
	addEndpoint(t, d, "dev-1", true)
	if err := d.SaveRegistration(context.Background(), savedReg("dev-1", "r1", time.Now())); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.LazyCommits != 0 {
		t.Fatalf("%d lazy commits under synchronous=NORMAL, want 0", st.LazyCommits)
	}
}

// TestLazyTxOnlyForRegistrationState: a transaction skips its fsync only
// when every write in it is registration state and no reading in it is
// waited for (acknowledged after its commit, or flushed).
func TestLazyTxOnlyForRegistrationState(t *testing.T) {
	d := openTest(t)
	reg := func() *writeJob { return &writeJob{lazy: true} }
	other := func() *writeJob { return &writeJob{} }
	plain := &batch{Batch: Batch{Endpoint: "dev-1"}}
	acked := &batch{Batch: Batch{Endpoint: "dev-1"}, then: func(error) {}}
	flush := &batch{done: make(chan error, 1)}
	for _, tc := range []struct {
		name string
		bs   []*batch
		jobs []*writeJob
		want bool
	}{
		{"registration writes", nil, []*writeJob{reg(), reg()}, true},
		{"with readings nobody waits for", []*batch{plain}, []*writeJob{reg()}, true},
		{"with another write", nil, []*writeJob{reg(), other()}, false},
		{"with acknowledged readings", []*batch{acked}, []*writeJob{reg()}, false},
		{"with a flush", []*batch{flush}, []*writeJob{reg()}, false},
		{"readings nobody waits for, alone", []*batch{plain}, nil, true},
		{"acknowledged readings alone", []*batch{acked}, nil, false},
	} {
		if got := d.lazyTx(tc.bs, tc.jobs); got != tc.want {
			t.Errorf("%s: lazy %v, want %v", tc.name, got, tc.want)
		}
	}
}

// writerTakesJobs waits until Run takes writes for its group commit.
func writerTakesJobs(t *testing.T, d *DB) {
	t.Helper()
	awaitStore(t, "the writer taking writes", func() bool {
		d.jobs.mu.Lock()
		defer d.jobs.mu.Unlock()
		return d.jobs.open
	})
}

// awaitStore checks cond every few milliseconds until it holds, and fails
// the test if it still does not after 20 s.
func awaitStore(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-giveUp:
			t.Fatalf("still waiting for %s after 20 s", what)
		}
	}
}
