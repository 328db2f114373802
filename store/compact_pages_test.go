package store

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// TestCompactCommitsWaitingReadingsBetweenPages: compaction reads the raw
// readings compactScanPage at a time and commits what waits in the queue
// between pages, so no acknowledgement waits for a whole step's read (a
// step of 200,000 rows read at once held every commit for 0.25 s
// in-process, 0.5–0.8 s under load). A reading queued before the step is
// committed after its first page and so packed in that same step; read in
// one piece, it would be left raw.
func TestCompactCommitsWaitingReadingsBetweenPages(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	t0 := time.Now().Add(-time.Hour)
	const perBatch = 512
	for i := range 2*compactScanPage/perBatch + 1 {
		recs := make([]lwm2m.Record, perBatch)
		for k := range recs {
			recs[k] = rec("/3303/0/5700", lwm2m.Float(float64(k)), t0.Add(time.Duration(i*perBatch+k)*time.Millisecond))
		}
		if err := d.Ingest(Batch{Endpoint: "dev", Records: recs}); err != nil {
			t.Fatal(err)
		}
		d.drainQueue(ctx)
	}
	if err := d.Ingest(Batch{Endpoint: "late", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(1), time.Time{})}}); err != nil {
		t.Fatal(err)
	}
	want := 2*compactScanPage + perBatch + 1
	before := d.Stats().LazyCommits
	n, err := d.compact(ctx, 10*compactScanPage)
	if err != nil || n != want {
		t.Fatalf("compacted %d, %v; want %d (the queued reading among them)", n, err, want)
	}
	var raw int
	if err := d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM resource`).Scan(&raw); err != nil || raw != 0 {
		t.Fatalf("raw readings left: %d, %v", raw, err)
	}
	// The deletes of packed rows, one transaction a page, wait for no
	// fsync of their own (the watermarks were synced before them); the
	// queued reading's commit in between is lazy too (Ingest).
	if lazy := d.Stats().LazyCommits - before; lazy != uint64((want+compactScanPage-1)/compactScanPage)+1 {
		t.Fatalf("lazy commits %d, want one per page of deleted rows and one for the queued reading", lazy)
	}
	if got, err := d.CountReadings(ctx, "late", lwm2m.NewPath(3303, 0, 5700), t0, time.Now().Add(time.Hour)); err != nil || got != 1 {
		t.Fatalf("the queued reading: %d, %v", got, err)
	}
}

// TestRawRowIDsOnlyGrow: a device's deletion that empties the raw table
// (here between two compaction steps; in the appliance it may come between
// two pages of one) does not make the next readings' ids start again at 1,
// below the rows a step was deleting up to: those readings would be
// deleted unpacked, or skipped as packed after a restart.
func TestRawRowIDsOnlyGrow(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	ingestN := func(ep string, n int) {
		recs := make([]lwm2m.Record, n)
		for k := range recs {
			recs[k] = rec("/3303/0/5700", lwm2m.Float(float64(k)), time.Now().Add(time.Duration(k-n)*time.Millisecond))
		}
		if err := d.Ingest(Batch{Endpoint: ep, Records: recs}); err != nil {
			t.Fatal(err)
		}
		d.drainQueue(ctx)
	}
	maxID := func() (top int64) {
		if err := d.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM resource`).Scan(&top); err != nil {
			t.Fatal(err)
		}
		return top
	}
	ingestN("gone", 50)
	before := maxID()
	if err := d.DeleteEndpoint(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if n := maxID(); n != 0 {
		t.Fatalf("raw table not emptied: max id %d", n)
	}
	ingestN("next", 5)
	var low int64
	if err := d.r.QueryRowContext(ctx, `SELECT MIN(id) FROM resource`).Scan(&low); err != nil || low <= before {
		t.Fatalf("the next readings start at id %d (%v), at or below the %d the raw table held before", low, err, before)
	}
	// And across a restart: ids start above every id and watermark left.
	d.Close()
	d = openWith(t, cfg)
	top := maxID()
	ingestN("after", 1)
	if n := maxID(); n <= top {
		t.Fatalf("after a restart the next id is %d, not above %d", n, top)
	}
	if got, err := d.CountReadings(ctx, "next", lwm2m.NewPath(3303, 0, 5700), time.Now().Add(-time.Hour), time.Now().Add(time.Hour)); err != nil || got != 5 {
		t.Fatalf("readings of next: %d, %v", got, err)
	}
}
