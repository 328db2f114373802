package store

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// BenchmarkIngest10kDevices measures sustained ingestion: b.N single-
// reading notifications round-robin from 10,000 devices through Ingest
// (waiting when the queue is full, as a device would retry), until all
// are committed — compaction included, since it runs in the writer.
func BenchmarkIngest10kDevices(b *testing.B) { benchIngest(b, false) }

// BenchmarkIngestComposite10kDevices is the same with composite
// notifications: two readings and one Event linking them each.
func BenchmarkIngestComposite10kDevices(b *testing.B) { benchIngest(b, true) }

func benchIngest(b *testing.B, composite bool) {
	const devices = 10000
	cfg := testConfig(b)
	d := openWith(b, cfg)
	names := make([]string, devices)
	for i := range names {
		names[i] = fmt.Sprintf("urn:imei:35%013d", i)
	}
	path := lwm2m.NewPath(3303, 0, 5700)
	path2 := lwm2m.NewPath(3304, 0, 5700)
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- d.Run(runCtx) }()
	// Warm up: every device and series exists, as in a running fleet.
	for i := 0; i < devices; i++ {
		d.IngestWait(ctx, Batch{Endpoint: names[i], Records: []lwm2m.Record{{Path: path, Value: lwm2m.Float(20)}}})
	}
	flush(b, d)
	// Measure only the sustained phase: creating 10,000 devices is once.
	d.stats.maxCommit.Store(0)
	d.stats.maxCompact.Store(0)
	d.stats.maxAck.Store(0)
	before := d.Stats()
	t0 := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch := Batch{Endpoint: names[i%devices], Received: t0.Add(time.Duration(i) * time.Microsecond),
			Records: []lwm2m.Record{{Path: path, Value: lwm2m.Float(float64(i%400) / 10)}}}
		if composite {
			batch.Event = EventComposite
			batch.Records = append(batch.Records, lwm2m.Record{Path: path2, Value: lwm2m.Float(float64(i%100) / 2)})
		}
		if err := d.IngestWait(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	flush(b, d)
	ingested := time.Since(t0)
	st := d.Stats()
	// Sustained means compaction kept up: the clock runs until every
	// reading is packed into chunks and roll-ups.
	stop()
	if err := <-runDone; err != nil {
		b.Fatal(err)
	}
	if err := d.Compact(ctx); err != nil {
		b.Fatal(err)
	}
	el := time.Since(t0)
	b.StopTimer()
	end := d.Stats()
	rows := b.N
	if composite {
		rows *= 2
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "notifications/s")
	b.ReportMetric(float64(rows)/el.Seconds(), "rows/s")
	b.ReportMetric(float64(rows)/ingested.Seconds(), "rows/s-committed")
	tx := st.Transactions - before.Transactions
	if tx > 0 {
		b.ReportMetric(float64(st.CommittedRecords-before.CommittedRecords)/float64(tx), "rows/tx")
		b.ReportMetric(float64((st.TotalCommit-before.TotalCommit).Microseconds())/float64(tx)/1000, "ms/commit")
	}
	b.ReportMetric(float64(st.MaxCommit.Microseconds())/1000, "max-ms/commit")
	b.ReportMetric(float64(st.MaxCompactStep.Microseconds())/1000, "max-ms/compact-tx")
	b.ReportMetric(float64(st.MaxAckToCommit.Microseconds())/1000, "max-ms/ack-to-commit")
	if end.CompactErrors > 0 || end.TailRecords != 0 {
		b.Fatalf("compaction: %d errors, %d readings left in the tail", end.CompactErrors, end.TailRecords)
	}
	if fi, err := os.Stat(cfg.Path); err == nil {
		b.ReportMetric(float64(fi.Size())/float64(rows+devices), "bytes/row")
	}
}

// The chart fixture: 10,000 devices with one temperature series each,
// 5,000 readings per series spread over 30 days (one every 8.6 minutes):
// 50,000,000 readings, written directly in chunk form. One extra "hot"
// device reports every second for the last 24 hours (86,400 readings,
// with its roll-ups) for the dense case.
const (
	fixtureDevices   = 10000
	fixturePerSeries = 5000
	fixtureVersion   = "chart-50M-v1"
)

var fixtureNow = time.Date(2026, 6, 30, 0, 0, 0, 0, time.UTC)

func benchRequested() bool {
	f := flag.Lookup("test.bench")
	return f != nil && f.Value.String() != ""
}

// chartFixture returns the path of the cached fixture, building it on
// first use (several minutes; it is reused between runs).
func chartFixture(b *testing.B) string {
	if !benchRequested() {
		b.Skip("the 50 M-row fixture is built only under -bench")
	}
	path := filepath.Join(os.TempDir(), "flownexus-store-"+fixtureVersion+".db")
	cfg := DefaultConfig()
	cfg.Path = path
	if _, err := os.Stat(path); err == nil {
		d, err := Open(context.Background(), cfg)
		if err == nil {
			var v string
			ok := d.Setting(context.Background(), "bench_fixture", &v) == nil && v == fixtureVersion
			d.Close()
			if ok {
				return path
			}
		}
		os.Remove(path)
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
	}
	b.Logf("building %s (50 M readings in chunk form) …", path)
	start := time.Now()
	d, err := Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if _, err := d.w.ExecContext(ctx, `PRAGMA synchronous=OFF`); err != nil {
		b.Fatal(err)
	}
	span := cfg.ChunkSpan.Milliseconds()
	step := (30 * 24 * time.Hour).Milliseconds() / fixturePerSeries
	from := fixtureNow.Add(-30 * 24 * time.Hour).UnixMilli()
	for dev0 := 0; dev0 < fixtureDevices; dev0 += 500 {
		tx, err := d.w.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		epSt, _ := tx.PrepareContext(ctx, `INSERT INTO endpoint(name, online, created) VALUES (?, 1, ?)`)
		seSt, _ := tx.PrepareContext(ctx, `INSERT INTO series(endpoint_id, path, object_id, resource_id, type) VALUES (?, '/3303/0/5700', 3303, 5700, ?)`)
		chSt, _ := tx.PrepareContext(ctx, `INSERT INTO chunk(series_id, bucket, seq, n, t_min, t_max, data) VALUES (?, ?, 0, ?, ?, ?, ?)`)
		for dev := dev0; dev < dev0+500; dev++ {
			res, err := epSt.ExecContext(ctx, fmt.Sprintf("urn:imei:35%013d", dev), from)
			if err != nil {
				b.Fatal(err)
			}
			ep, _ := res.LastInsertId()
			res, err = seSt.ExecContext(ctx, ep, int(lwm2m.TypeFloat))
			if err != nil {
				b.Fatal(err)
			}
			sid, _ := res.LastInsertId()
			var pts []point
			bucket := floorDiv(from, span)
			flushChunk := func() {
				if len(pts) == 0 {
					return
				}
				if _, err := chSt.ExecContext(ctx, sid, bucket, len(pts), pts[0].t, pts[len(pts)-1].t, encodeChunk(lwm2m.TypeFloat, pts)); err != nil {
					b.Fatal(err)
				}
				pts = pts[:0]
			}
			for i := 0; i < fixturePerSeries; i++ {
				t := from + int64(i)*step + int64(dev%97)*1000
				if bk := floorDiv(t, span); bk != bucket {
					flushChunk()
					bucket = bk
				}
				pts = append(pts, point{t, lwm2m.Float(20 + float64((i+dev)%100)/10)})
			}
			flushChunk()
		}
		epSt.Close()
		seSt.Close()
		chSt.Close()
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
	// The hot device goes through the real ingestion and compaction path.
	hot := make([]lwm2m.Record, 0, 86400)
	for i := 0; i < 86400; i++ {
		hot = append(hot, lwm2m.Record{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Float(float64(i%600) / 10),
			Time: fixtureNow.Add(-24*time.Hour + time.Duration(i)*time.Second)})
	}
	d.drainQueue(ctx)
	for i := 0; i < len(hot); i += 10000 {
		d.queue <- &batch{Batch: Batch{Endpoint: "hot", Received: fixtureNow, Records: hot[i:min(i+10000, len(hot))]}}
		d.drainQueue(ctx)
	}
	if err := d.Compact(ctx); err != nil {
		b.Fatal(err)
	}
	if err := d.SetSetting(ctx, "bench_fixture", fixtureVersion); err != nil {
		b.Fatal(err)
	}
	d.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	b.Logf("fixture built in %v", time.Since(start).Round(time.Second))
	return path
}

// BenchmarkChart24h: a 24-hour chart of one resource with 50 M readings
// stored — a typical device (raw chunks) and a 1 Hz device (minute
// roll-ups by default, and forced raw).
func BenchmarkChart24h(b *testing.B) {
	path := chartFixture(b)
	cfg := DefaultConfig()
	cfg.Path = path
	d, err := Open(context.Background(), cfg, WithClock(func() time.Time { return fixtureNow }))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	if fi, err := os.Stat(path); err == nil {
		var chunks, readings int64
		d.r.QueryRowContext(ctx, `SELECT COUNT(*), SUM(n) FROM chunk`).Scan(&chunks, &readings)
		b.Logf("fixture: %d readings in %d chunks, %.0f MB", readings, chunks, float64(fi.Size())/1e6)
	}
	for _, c := range []struct {
		name, ep, src string
		min           int64
	}{
		{"typical", fmt.Sprintf("urn:imei:35%013d", 4242), SourceAuto, 160},
		{"1Hz", "hot", SourceAuto, 86400},
		{"1Hz-raw", "hot", SourceRaw, 86400},
	} {
		b.Run(c.name, func(b *testing.B) {
			q := ChartQuery{Endpoint: c.ep, Path: lwm2m.NewPath(3303, 0, 5700), From: fixtureNow.Add(-24 * time.Hour), To: fixtureNow, Source: c.src}
			var ch Chart
			for i := 0; i < b.N; i++ {
				ch, err = d.Chart(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if n := sumCount(ch.Points); n < c.min || len(ch.Points) > 1000 {
				b.Fatalf("chart of %s: %d points covering %d readings (source %s)", c.ep, len(ch.Points), n, ch.Source)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/query")
			b.ReportMetric(float64(len(ch.Points)), "points")
		})
	}
}

// BenchmarkListEndpoints10k: one page of the device list with a filter
// and a sort, over 10,000 devices.
func BenchmarkListEndpoints10k(b *testing.B) {
	d := openTest(b)
	ctx := context.Background()
	modes := []string{ModeNoSec, ModePSK, ModeX509}
	tx, _ := d.w.BeginTx(ctx, nil)
	for i := 0; i < 10000; i++ {
		if _, err := tx.ExecContext(ctx, `INSERT INTO endpoint(name, online, security_mode, firmware_version, last_seen, created) VALUES (?, ?, ?, ?, ?, 1)`,
			fmt.Sprintf("urn:imei:35%013d", i), i%3 == 0, modes[i%3], fmt.Sprintf("1.%d", i%5), int64(i)*1000); err != nil {
			b.Fatal(err)
		}
	}
	tx.Commit()
	on := true
	for _, q := range []struct {
		name string
		q    EndpointQuery
	}{
		{"online-by-lastSeen", EndpointQuery{Online: &on, Sort: "-lastSeen", Limit: 50, Offset: 1000}},
		{"search", EndpointQuery{Search: "0042", Limit: 50}},
		{"psk-firmware", EndpointQuery{SecurityMode: ModePSK, FirmwareVersion: "1.3", Sort: "name", Limit: 50}},
	} {
		b.Run(q.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				list, total, err := d.ListEndpoints(ctx, q.q)
				if err != nil || total == 0 || len(list) == 0 {
					b.Fatalf("%d %d %v", len(list), total, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/query")
		})
	}
}
