package store

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// TestCommitsPacedGatherReadings (issue 15): a commit of acknowledged
// readings that comes within CommitGap of the last fsynced commit waits,
// and takes what arrives meanwhile. The gap here outlasts any test, so
// nothing in it depends on time: four readings queued one after another
// commit in one transaction once they fill the batch cap, and a stop ends
// a wait at once and commits what waited.
func TestCommitsPacedGatherReadings(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommitGap = time.Hour
	cfg.MaxBatchRecords = 4
	d := openWith(t, cfg)
	ctx := context.Background()
	if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: "dev", Online: true}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	defer func() {
		stop()
		<-ran
	}()
	ingest := func(v float64) <-chan error {
		done := make(chan error, 1)
		b := Batch{Endpoint: "dev", Received: time.Now(),
			Records: []lwm2m.Record{{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Float(v)}}}
		if err := d.IngestThen(b, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		return done
	}
	committed := func(what string, chs ...<-chan error) {
		t.Helper()
		for _, ch := range chs {
			select {
			case err := <-ch:
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			case <-time.After(time.Minute):
				t.Fatalf("%s: never committed", what)
			}
		}
	}
	paced := func(n uint64) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); d.Stats().Paced < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the writer never waited a %d. time", n)
			}
		}
	}

	// No fsynced commit before it: the first reading does not wait.
	committed("the first reading", ingest(1))
	if n := d.Stats().Paced; n != 0 {
		t.Fatalf("%d commits waited before any fsync, want 0", n)
	}
	tx0 := d.Stats().Transactions
	b := ingest(2)
	paced(1) // the writer holds b
	c, e, f := ingest(3), ingest(4), ingest(5)
	committed("four readings, the batch cap", b, c, e, f)
	if n := d.Stats().Transactions - tx0; n != 1 {
		t.Errorf("four readings queued during a wait took %d transactions, want 1", n)
	}

	g := ingest(6)
	paced(2)
	stop()
	committed("a reading waiting at the stop", g)
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	ran <- nil // for the deferred stop
	got, err := d.Latest(ctx, "dev")
	if err != nil || len(got) != 1 || got[0].Value.Float() != 6 {
		t.Fatalf("latest after the stop: %+v %v", got, err)
	}
}

// TestCommitGapDefaultsAndOff: an unset gap is DefaultCommitGap, a
// negative one turns pacing off (the first commit's successor does not
// wait).
func TestCommitGapDefaultsAndOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommitGap = 0
	if d := openWith(t, cfg); d.cfg.CommitGap != DefaultCommitGap {
		t.Fatalf("CommitGap %v, want %v", d.cfg.CommitGap, DefaultCommitGap)
	}
	cfg = testConfig(t)
	cfg.CommitGap = -1
	d := openWith(t, cfg)
	runWriter(t, d)
	ctx := context.Background()
	if _, err := d.UpsertEndpoint(ctx, Endpoint{Name: "dev", Online: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		done := make(chan error, 1)
		b := Batch{Endpoint: "dev", Received: time.Now(),
			Records: []lwm2m.Record{{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Float(float64(i))}}}
		if err := d.IngestThen(b, func(err error) { done <- err }); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("never committed")
		}
	}
	if n := d.Stats().Paced; n != 0 {
		t.Fatalf("%d commits waited with pacing off, want 0", n)
	}
}
