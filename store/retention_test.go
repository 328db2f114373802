package store

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

func TestRetentionByAgeWithOverrides(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	cfg := testConfig(t)
	cfg.RetentionOverrides = map[string]time.Duration{"3/7": 10 * 24 * time.Hour}
	d := openWith(t, cfg, WithClock(c.now))
	runWriter(t, d)
	now := c.now()
	ages := []time.Duration{40 * 24 * time.Hour, 20 * 24 * time.Hour, 24 * time.Hour}
	var recs []lwm2m.Record
	for _, a := range ages {
		recs = append(recs, rec("/3303/0/5700", lwm2m.Float(1), now.Add(-a)), rec("/3/0/7", lwm2m.Int(3300), now.Add(-a)))
	}
	d.Ingest(Batch{Endpoint: "dev", Records: recs, Event: EventComposite, Received: now.Add(-40 * 24 * time.Hour)})
	flush(t, d)
	d.AddDeviceLog(ctx, "dev", now.Add(-31*24*time.Hour), "old line")
	d.AddDeviceLog(ctx, "dev", now.Add(-time.Hour), "new line")
	if _, err := d.compact(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	// Run's writer is idle; ApplyRetention shares the writer connection.
	res, err := d.ApplyRetention(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chunks != 3 || res.Events != 1 || res.Logs != 1 {
		t.Fatalf("retention: %+v", res)
	}
	count := func(path string) int {
		pts, err := d.Readings(ctx, "dev", lwm2m.MustParsePath(path), now.Add(-100*24*time.Hour), now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(pts)
	}
	if n := count("/3303/0/5700"); n != 2 {
		t.Fatalf("default retention kept %d of 3 (want 2)", n)
	}
	if n := count("/3/0/7"); n != 1 {
		t.Fatalf("override retention kept %d of 3 (want 1)", n)
	}
	// Roll-ups outlive the raw readings: the 40-day-old hour is still there.
	ch, err := d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: lwm2m.MustParsePath("/3303/0/5700"), From: now.Add(-41 * 24 * time.Hour), To: now, Source: SourceHour})
	if err != nil || sumCount(ch.Points) != 3 {
		t.Fatalf("hour roll-ups after retention: %+v %v", ch, err)
	}
	// Latest survives retention of its readings.
	if l, _ := d.Latest(ctx, "dev"); len(l) != 2 {
		t.Fatalf("latest: %+v", l)
	}
	if logs, _ := d.DeviceLogs(ctx, "dev", 0, 10); len(logs) != 1 || logs[0].Line != "new line" {
		t.Fatalf("logs: %+v", logs)
	}
	// Roll-ups go too once past their own retention.
	c.add(800 * 24 * time.Hour)
	res, err = d.ApplyRetention(ctx)
	if err != nil || res.MinuteRollups == 0 || res.HourRollups == 0 {
		t.Fatalf("roll-up retention: %+v %v", res, err)
	}
}

func TestRetentionBySize(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	cfg := testConfig(t)
	cfg.ChunkSpan = time.Minute
	d := openWith(t, cfg, WithClock(c.now))
	runWriter(t, d)
	now := c.now()
	// 20 days of opaque readings, 4 KiB each, one per series per hour.
	blob := make([]byte, 4096)
	for day := 0; day < 20; day++ {
		var recs []lwm2m.Record
		for h := 0; h < 24; h++ {
			blob[0] = byte(h)
			recs = append(recs, rec("/5/0/0", lwm2m.Opaque(append([]byte{}, blob...)), now.Add(-time.Duration(20-day)*24*time.Hour+time.Duration(h)*time.Hour)))
		}
		if err := d.Ingest(Batch{Endpoint: "dev", Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, d)
	for d.rawRows.Load() > 0 {
		if _, err := d.compact(ctx, 1000); err != nil {
			t.Fatal(err)
		}
	}
	full, _ := d.UsedBytes(ctx)
	d.cfg.MaxSizeBytes = full / 2
	res, err := d.ApplyRetention(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used, _ := d.UsedBytes(ctx)
	if used > d.cfg.MaxSizeBytes || res.SizeChunks == 0 {
		t.Fatalf("size cap %d: used %d after removing %d chunks (was %d)", d.cfg.MaxSizeBytes, used, res.SizeChunks, full)
	}
	pts, _ := d.Readings(ctx, "dev", lwm2m.MustParsePath("/5/0/0"), now.Add(-30*24*time.Hour), now, 0)
	if len(pts) == 0 || len(pts) >= 480 {
		t.Fatalf("kept %d of 480", len(pts))
	}
	// The oldest went first: what is left is the newest, contiguous.
	if !pts[len(pts)-1].T.Equal(now.Add(-24*time.Hour + 23*time.Hour)) {
		t.Fatalf("newest reading lost: %v", pts[len(pts)-1].T)
	}
	if first := pts[0].T; first.Before(now.Add(-time.Duration(len(pts)+1) * time.Hour)) {
		t.Fatalf("oldest kept %v with %d kept: not oldest-first", first, len(pts))
	}
	var ok string
	d.r.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&ok)
	if ok != "ok" {
		t.Fatal(ok)
	}
}

// TestCompactionWatermarkAcrossCrash: a compaction interrupted after some
// series groups committed but before the raw rows were deleted must not
// show or pack those readings twice after a restart.
func TestCompactionWatermarkAcrossCrash(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		var recs []lwm2m.Record
		for j := 0; j < 30; j++ {
			recs = append(recs, rec("/3303/0/5700", lwm2m.Float(float64(j)), t0.Add(time.Duration(j)*time.Minute)))
		}
		d.Ingest(Batch{Endpoint: "dev-" + string(rune('a'+i)), Records: recs})
	}
	d.drainQueue(ctx)
	// Pack half of the series the way compact does, then stop as a crash
	// would: no delete of the raw rows.
	var maxRow int64
	d.w.QueryRowContext(ctx, `SELECT MAX(id) FROM resource`).Scan(&maxRow)
	bySeries := map[int64]map[int64][]point{}
	rows, _ := d.w.QueryContext(ctx, `SELECT id, series_id, t, type, num, txt, blb FROM resource ORDER BY id`)
	for rows.Next() {
		tp, s, _ := scanResourceRow(rows)
		if bySeries[s] == nil {
			bySeries[s] = map[int64][]point{}
		}
		k := floorDiv(tp.t, d.cfg.ChunkSpan.Milliseconds())
		bySeries[s][k] = append(bySeries[s][k], tp.point)
	}
	rows.Close()
	var half []int64
	for s := range bySeries {
		if len(half) < 5 {
			half = append(half, s)
		}
	}
	if err := d.compactGroup(ctx, half, bySeries, maxRow); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d = openWith(t, cfg)
	check := func(phase string) {
		t.Helper()
		for i := 0; i < 10; i++ {
			ep := "dev-" + string(rune('a'+i))
			pts, err := d.Readings(ctx, ep, lwm2m.MustParsePath("/3303/0/5700"), t0, t0.Add(time.Hour), 0)
			if err != nil || len(pts) != 30 {
				t.Fatalf("%s: %s has %d readings, want 30 (%v)", phase, ep, len(pts), err)
			}
			ch, err := d.Chart(ctx, ChartQuery{Endpoint: ep, Path: lwm2m.MustParsePath("/3303/0/5700"), From: t0, To: t0.Add(time.Hour), Source: SourceHour})
			if err != nil || sumCount(ch.Points) != 30 {
				t.Fatalf("%s: %s roll-up counts %d, want 30 (%v)", phase, ep, sumCount(ch.Points), err)
			}
		}
	}
	check("after restart")
	if err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	check("after compaction")
	var raw int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM resource`).Scan(&raw)
	if raw != 0 || d.Stats().TailRecords != 0 {
		t.Fatalf("raw rows left: %d, tail %d", raw, d.Stats().TailRecords)
	}
}

// TestRunCompactsAndRetains: Run's own timers compact readings and apply
// retention, without any call from outside.
func TestRunCompactsAndRetains(t *testing.T) {
	c := newClock()
	cfg := testConfig(t)
	cfg.CompactInterval = 10 * time.Millisecond
	cfg.RetentionInterval = 10 * time.Millisecond
	d := openWith(t, cfg, WithClock(c.now))
	runWriter(t, d)
	old := c.now().Add(-40 * 24 * time.Hour)
	d.Ingest(Batch{Endpoint: "dev", Records: []lwm2m.Record{
		rec("/3303/0/5700", lwm2m.Float(1), old), rec("/3303/0/5700", lwm2m.Float(2), c.now())}})
	flush(t, d)
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st := d.Stats()
		if st.CompactedRecords == 2 && st.RetentionDeleted > 0 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("Run did not compact and retain: %+v", st)
		case <-tick.C:
		}
	}
	pts, err := d.Readings(context.Background(), "dev", lwm2m.MustParsePath("/3303/0/5700"), old.Add(-time.Hour), c.now(), 0)
	if err != nil || len(pts) != 1 || pts[0].V.Float() != 2 {
		t.Fatalf("after Run's retention: %v %v", pts, err)
	}
}

// TestSetRetention: a retention changed at run time (the web UI's
// settings) applies at the next pass.
func TestSetRetention(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openWith(t, testConfig(t), WithClock(c.now))
	runWriter(t, d)
	now := c.now()
	var recs []lwm2m.Record
	for _, age := range []time.Duration{20 * 24 * time.Hour, 5 * 24 * time.Hour, time.Hour} {
		recs = append(recs, rec("/3303/0/5700", lwm2m.Float(1), now.Add(-age)))
	}
	d.Ingest(Batch{Endpoint: "dev", Records: recs, Received: now})
	flush(t, d)
	if _, err := d.compact(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	count := func() int {
		pts, err := d.Readings(ctx, "dev", lwm2m.MustParsePath("/3303/0/5700"), now.Add(-100*24*time.Hour), now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return len(pts)
	}
	if _, err := d.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("the default 30 days kept %d of 3", n)
	}
	d.SetRetention(7 * 24 * time.Hour)
	if _, err := d.ApplyRetention(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 {
		t.Fatalf("7 days kept %d of 3, want 2", n)
	}
	d.SetRetention(0) // ignored: retention must stay positive
	if got := d.rawRetention(); got != 7*24*time.Hour {
		t.Fatalf("retention = %v", got)
	}
}
