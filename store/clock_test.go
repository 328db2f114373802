package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// fakeClocks is a wall clock a test sets, and a monotonic one that only
// moves forward with Advance.
type fakeClocks struct {
	wall time.Time
	mono time.Duration
}

func (f *fakeClocks) Advance(d time.Duration) { f.wall, f.mono = f.wall.Add(d), f.mono+d }
func (f *fakeClocks) Step(d time.Duration)    { f.wall = f.wall.Add(d) } // the wall clock is set

func (f *fakeClocks) clock() func() time.Time {
	return NewSteadyClock(func() time.Time { return f.wall }, func() time.Duration { return f.mono })
}

func TestSteadyClock(t *testing.T) {
	f := &fakeClocks{wall: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	now := f.clock()
	a := now()
	if !a.Equal(f.wall) {
		t.Fatalf("first reading %v, want the wall clock %v", a, f.wall)
	}
	f.Advance(time.Second)
	b := now()
	// Set back an hour: readings go on from where they were.
	f.Step(-time.Hour)
	f.Advance(time.Second)
	c := now()
	if want := b.Add(time.Second); !c.Equal(want) {
		t.Fatalf("after the clock was set back: %v, want %v", c, want)
	}
	f.Advance(time.Second)
	if d := now(); !d.Equal(c.Add(time.Second)) {
		t.Fatalf("reading after a step back did not advance with the monotonic clock: %v after %v", d, c)
	}
	// Set forward two hours: taken as it comes.
	f.Step(2 * time.Hour)
	f.Advance(time.Second)
	if e := now(); !e.Equal(f.wall) {
		t.Fatalf("after the clock was set forward: %v, want the wall clock %v", e, f.wall)
	}
}

// TestClockJumpsKeepTelemetryOrder ingests readings stamped by the store
// (no time of their own) while the wall clock is set back and forward:
// they are stored in the order received and the latest value is the last
// one received.
func TestClockJumpsKeepTelemetryOrder(t *testing.T) {
	f := &fakeClocks{wall: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "clock.db")
	d := openWith(t, cfg, WithClock(f.clock()))
	runWriter(t, d)
	p := lwm2m.NewPath(3303, 0, 5700)
	steps := []time.Duration{0, 0, -time.Hour, 0, 3 * time.Hour, -30 * time.Minute, 0}
	for i, s := range steps {
		f.Step(s)
		f.Advance(time.Second)
		if err := d.Ingest(Batch{Endpoint: "dev", Received: d.Now(), Records: []lwm2m.Record{{Path: p, Value: lwm2m.Int(int64(i))}}}); err != nil {
			t.Fatal(err)
		}
		flush(t, d)
	}
	ctx := context.Background()
	pts, err := d.Readings(ctx, "dev", p, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != len(steps) {
		t.Fatalf("%d readings stored, want %d", len(pts), len(steps))
	}
	for i := range pts {
		if pts[i].V.Int() != int64(i) {
			t.Fatalf("reading %d is value %d: the clock jumps reordered telemetry (%v)", i, pts[i].V.Int(), pts)
		}
		if i > 0 && !pts[i].T.After(pts[i-1].T) {
			t.Fatalf("reading %d stamped %v, not after %v", i, pts[i].T, pts[i-1].T)
		}
	}
	latest, err := d.Latest(ctx, "dev")
	if err != nil || len(latest) != 1 {
		t.Fatalf("latest: %v %v", latest, err)
	}
	if v := latest[0].Value.Int(); v != int64(len(steps)-1) {
		t.Fatalf("latest value %d, want the last received %d", v, len(steps)-1)
	}
}
