package store

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// TestStaleReadingsKeptButNeverLatest (issue 13): the readings of a
// notification that arrived out of order (Batch.Stale, RFC 7641 §3.4)
// are stored, placed before the newest reading when their reception time
// would put them after it, and never become the latest value — not at
// once, not after compaction, not after a restart; none is lost, and none
// goes after the newest. Subscribers see them
// with the time they were stored at.
func TestStaleReadingsKeptButNeverLatest(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	cfg := testConfig(t)
	d := openWith(t, cfg, WithClock(c.now))
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- d.Run(runCtx) }()
	sub, unsub := d.Subscribe(16)
	defer unsub()
	p := lwm2m.NewPath(3303, 0, 5700)
	put := func(d *DB, v float64, stale bool, own time.Time) {
		t.Helper()
		c.add(time.Second)
		if err := d.Ingest(Batch{Endpoint: "dev", Received: c.now(), Stale: stale, Records: []lwm2m.Record{{Path: p, Value: lwm2m.Float(v), Time: own}}}); err != nil {
			t.Fatal(err)
		}
		flush(t, d)
	}
	check := func(d *DB, when string, want []float64, latest float64) {
		t.Helper()
		pts, err := d.Readings(ctx, "dev", p, c.now().Add(-time.Hour), c.now().Add(time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		// Stale readings received after the same newest one share the
		// millisecond before it: compare as sets.
		var got []float64
		for _, pt := range pts {
			got = append(got, pt.V.Float())
		}
		sort.Float64s(got)
		if len(got) != len(want) {
			t.Fatalf("%s: readings %v, want %v", when, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: readings %v, want %v", when, got, want)
			}
		}
		if last := pts[len(pts)-1]; last.V.Float() != latest {
			t.Fatalf("%s: the last reading in time is %v, want the newest %v", when, last.V, latest)
		}
		l, err := d.Latest(ctx, "dev")
		if err != nil || len(l) != 1 || l[0].Value.Float() != latest {
			t.Fatalf("%s: latest %v (%v), want %v", when, l, err, latest)
		}
	}

	// A stale notification of a series with nothing stored yet: nothing
	// to keep it from being the latest.
	put(d, 10, true, time.Time{})
	check(d, "first reading stale", []float64{10}, 10)
	<-sub
	put(d, 20, false, time.Time{})
	fresh := c.now()
	<-sub
	put(d, 19, true, time.Time{}) // received after 20, taken before it
	check(d, "stale after fresh", []float64{10, 19, 20}, 20)
	if n := <-sub; len(n.Records) != 1 || !n.Records[0].Time.Equal(fresh.Add(-time.Millisecond)) || !n.Received.Equal(c.now()) {
		t.Fatalf("subscriber got %+v, want the reading at %v, received %v", n, fresh.Add(-time.Millisecond), c.now())
	}
	// A stale reading with a time of its own keeps it.
	own := fresh.Add(-30 * time.Second)
	put(d, 5, true, own)
	check(d, "stale with its own time", []float64{5, 10, 19, 20}, 20)
	if n := <-sub; !n.Records[0].Time.Equal(own) {
		t.Fatalf("subscriber got %+v, want the device's time %v", n, own)
	}
	if _, err := d.compact(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	check(d, "after compaction", []float64{5, 10, 19, 20}, 20)
	put(d, 18, true, time.Time{})
	check(d, "stale after compaction", []float64{5, 10, 18, 19, 20}, 20)

	stop()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	unsub()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart, with the newest reading compacted into the latest
	// table and only an older one in memory.
	d2 := openWith(t, cfg, WithClock(c.now))
	runWriter(t, d2)
	check(d2, "after restart", []float64{5, 10, 18, 19, 20}, 20)
	put(d2, 17, true, time.Time{})
	check(d2, "stale after restart", []float64{5, 10, 17, 18, 19, 20}, 20)
	if _, err := d2.compact(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	check(d2, "compacted after restart", []float64{5, 10, 17, 18, 19, 20}, 20)
	// The next fresh reading is the latest again.
	put(d2, 21, false, time.Time{})
	check(d2, "fresh after all", []float64{5, 10, 17, 18, 19, 20, 21}, 21)
}
