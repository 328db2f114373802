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
