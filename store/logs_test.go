package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// runLogs starts RunLogs for the test's lifetime.
func runLogs(t testing.TB, d *DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.RunLogs(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunLogs: %v", err)
		}
	})
}

func flushLogs(t testing.TB, d *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.FlushLogs(ctx); err != nil {
		t.Fatalf("FlushLogs: %v", err)
	}
}

func logLines(prefix string, n int, sev lwm2m.Severity, class int) []LogEntry {
	out := make([]LogEntry, n)
	for i := range out {
		out[i] = LogEntry{Severity: sev, Class: class, Line: fmt.Sprintf("%s %d", prefix, i)}
	}
	return out
}

func TestIngestLogsAndQuery(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	runLogs(t, d)
	d.UpsertEndpoint(ctx, Endpoint{Name: "a"})
	d.UpsertEndpoint(ctx, Endpoint{Name: "b"})
	sub, cancel := d.SubscribeLogs(16)
	defer cancel()
	devTime := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	recv := time.Date(2026, 5, 1, 12, 0, 5, 0, time.UTC)
	if err := d.IngestLogs(LogBatch{Endpoint: "a", Received: recv, Lines: []LogEntry{
		{Line: "<inf> boot", Severity: lwm2m.SeverityInfo, Class: 1},
		{Line: "<err> Sensor 100% FAILED_x", Severity: lwm2m.SeverityErr, Class: 1, Time: devTime},
		{Line: "no level", Severity: lwm2m.SeverityUnknown, Class: 4},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := d.IngestLogs(LogBatch{Endpoint: "b", Received: recv, Lines: logLines("<wrn> b", 3, lwm2m.SeverityWarning, 0)}); err != nil {
		t.Fatal(err)
	}
	flushLogs(t, d)

	all, err := d.QueryLogs(ctx, LogQuery{Severity: lwm2m.SeverityUnknown, Class: -1})
	if err != nil || len(all) != 6 || all[0].Endpoint != "b" || all[5].Line != "<inf> boot" {
		t.Fatalf("all: %+v %v", all, err)
	}
	a, _ := d.QueryLogs(ctx, LogQuery{Endpoint: "a", Severity: lwm2m.SeverityUnknown, Class: -1})
	if len(a) != 3 || !a[1].Time.Equal(devTime) || !a[2].Time.Equal(recv) || a[0].Severity != lwm2m.SeverityUnknown || a[1].Severity != lwm2m.SeverityErr {
		t.Fatalf("a: %+v", a)
	}
	if w, _ := d.QueryLogs(ctx, LogQuery{Severity: lwm2m.SeverityWarning, Class: -1}); len(w) != 4 {
		t.Fatalf("warning or worse: %d lines", len(w))
	}
	if c, _ := d.QueryLogs(ctx, LogQuery{Endpoint: "a", Severity: lwm2m.SeverityUnknown, Class: 4}); len(c) != 1 || c[0].Line != "no level" {
		t.Fatalf("class 4: %+v", c)
	}
	// Text search is literal: % and _ are not wildcards; case-insensitive.
	if q, _ := d.QueryLogs(ctx, LogQuery{Text: "100% failed_", Severity: lwm2m.SeverityUnknown, Class: -1}); len(q) != 1 {
		t.Fatalf("text search: %+v", q)
	}
	if q, _ := d.QueryLogs(ctx, LogQuery{Text: "0%", Severity: lwm2m.SeverityUnknown, Class: -1}); len(q) != 1 {
		t.Fatalf("literal %%: %+v", q)
	}
	if q, _ := d.QueryLogs(ctx, LogQuery{Text: "_", Severity: lwm2m.SeverityUnknown, Class: -1}); len(q) != 1 {
		t.Fatalf("literal _: %+v", q)
	}
	// Paging back and since.
	p1, _ := d.QueryLogs(ctx, LogQuery{Limit: 2, Severity: lwm2m.SeverityUnknown, Class: -1})
	p2, _ := d.QueryLogs(ctx, LogQuery{Limit: 10, Before: p1[1].ID, Severity: lwm2m.SeverityUnknown, Class: -1})
	if len(p1) != 2 || len(p2) != 4 || p2[0].ID >= p1[1].ID {
		t.Fatalf("paging: %+v / %+v", p1, p2)
	}
	if s, _ := d.QueryLogs(ctx, LogQuery{Endpoint: "a", Since: devTime.Add(time.Second), Severity: lwm2m.SeverityUnknown, Class: -1}); len(s) != 2 {
		t.Fatalf("since: %+v", s)
	}
	if _, err := d.QueryLogs(ctx, LogQuery{Endpoint: "ghost"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	// Subscribers got both endpoints' lines with their ids.
	got := map[string]int{}
	for len(got) < 2 {
		select {
		case ls := <-sub:
			got[ls[0].Endpoint] += len(ls)
			if ls[0].ID == 0 {
				t.Fatalf("published without id: %+v", ls)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("subscription got %v", got)
		}
	}
	if got["a"] != 3 || got["b"] != 3 {
		t.Fatalf("published %v", got)
	}
	u, err := d.LogUsage(ctx)
	if err != nil || u.Lines != 6 || u.Bytes <= 6*logRowOverhead {
		t.Fatalf("usage %+v %v", u, err)
	}
	if st := d.LogStats(); st.AcceptedLines != 6 || st.CommittedLines != 6 || st.RefusedBatches != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestIngestLogsRefusals(t *testing.T) {
	ctx := context.Background()
	// No RunLogs: the queue only fills.
	d := openTest(t, WithLogConfig(LogConfig{QueueLines: 100, EndpointShare: 40}))
	d.UpsertEndpoint(ctx, Endpoint{Name: "flood"})
	d.UpsertEndpoint(ctx, Endpoint{Name: "quiet"})
	if err := d.IngestLogs(LogBatch{Endpoint: "", Lines: logLines("x", 1, -1, 0)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty endpoint: %v", err)
	}
	if err := d.IngestLogs(LogBatch{Endpoint: "flood", Lines: logLines("x", 41, -1, 0)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("batch over the share: %v", err)
	}
	accepted, refused := 0, 0
	for i := 0; i < 10; i++ {
		err := d.IngestLogs(LogBatch{Endpoint: "flood", Lines: logLines("x", 10, -1, 0)})
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrQueueFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if accepted != 4 || refused != 6 {
		t.Fatalf("flood: %d accepted, %d refused; want 4 and 6 (share 40)", accepted, refused)
	}
	// Another device still gets in: the flood is held to its share.
	for i := 0; i < 4; i++ {
		if err := d.IngestLogs(LogBatch{Endpoint: "quiet", Lines: logLines("q", 10, -1, 0)}); err != nil {
			t.Fatalf("quiet device refused: %v", err)
		}
	}
	// Now the whole queue (100) is the limit: 80 waiting + 30 > 100.
	d.UpsertEndpoint(ctx, Endpoint{Name: "third"})
	if err := d.IngestLogs(LogBatch{Endpoint: "third", Lines: logLines("t", 30, -1, 0)}); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("full queue: %v", err)
	}
	st := d.LogStats()
	if st.RefusedBatches != 8 || st.RefusedLines != 41+60+30 || st.QueueLines != 80 {
		t.Fatalf("stats %+v", st)
	}
	// Close commits what was accepted.
	path := d.Path()
	d.Close()
	d2 := openWith(t, Config{Path: path})
	if u, _ := d2.LogUsage(ctx); u.Lines != 80 {
		t.Fatalf("after close: %d lines, want 80", u.Lines)
	}
	if err := d.IngestLogs(LogBatch{Endpoint: "quiet", Lines: logLines("q", 1, -1, 0)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

// A log flood fills only the log lane: telemetry from other devices is
// accepted and committed all the while, and the refusals are counted.
func TestLogFloodDoesNotStopTelemetry(t *testing.T) {
	ctx := context.Background()
	d := openTest(t, WithLogConfig(LogConfig{QueueLines: 2000, EndpointShare: 1000, MaxBatchLines: 200}))
	runWriter(t, d)
	runLogs(t, d)
	d.UpsertEndpoint(ctx, Endpoint{Name: "flood"})
	d.UpsertEndpoint(ctx, Endpoint{Name: "sensor"})
	stop := make(chan struct{})
	floodDone := make(chan int)
	go func() {
		refused := 0
		for {
			select {
			case <-stop:
				floodDone <- refused
				return
			default:
			}
			if err := d.IngestLogs(LogBatch{Endpoint: "flood", Lines: logLines("<dbg> spam", 100, lwm2m.SeverityDebug, 0)}); errors.Is(err, ErrQueueFull) {
				refused++
			}
		}
	}()
	// Wait until the flood has filled the log lane (a refusal shows),
	// then send telemetry while it goes on.
	deadline := time.Now().Add(60 * time.Second)
	for d.LogStats().RefusedBatches == 0 && time.Now().Before(deadline) {
		d.IngestLogs(LogBatch{Endpoint: "flood", Lines: logLines("<dbg> spam", 1000, lwm2m.SeverityDebug, 0)})
	}
	const readings = 200
	for i := 0; i < readings; i++ {
		ingestWait(t, d, "sensor", "/3303/0/5700", float64(i))
	}
	flush(t, d)
	close(stop)
	<-floodDone
	flushLogs(t, d)
	if st := d.Stats(); st.CommittedRecords < readings {
		t.Fatalf("telemetry committed %d of %d during the flood", st.CommittedRecords, readings)
	}
	if st := d.LogStats(); st.RefusedBatches == 0 || st.CommittedLines == 0 {
		t.Fatalf("log stats %+v: want refusals counted and lines committed", st)
	}
	pts, err := d.Readings(ctx, "sensor", lwm2m.MustParsePath("/3303/0/5700"), time.Time{}, time.Now().Add(time.Hour), 1000)
	if err != nil || len(pts) != readings {
		t.Fatalf("sensor series: %d points, %v", len(pts), err)
	}
}

func ingestWait(t testing.TB, d *DB, ep, path string, v float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.IngestWait(ctx, Batch{Endpoint: ep, Received: d.now(), Records: []lwm2m.Record{{Path: lwm2m.MustParsePath(path), Value: lwm2m.Float(v)}}}); err != nil {
		t.Fatal(err)
	}
}

// Retention by size keeps the logs under their cap, oldest lines first,
// and the count stays right through deletes (including an endpoint's).
func TestLogRetentionBySize(t *testing.T) {
	ctx := context.Background()
	const limit = 256 << 10
	d := openTest(t, WithLogConfig(LogConfig{MaxBytes: limit, MaxBatchLines: 500}))
	runLogs(t, d)
	d.UpsertEndpoint(ctx, Endpoint{Name: "a"})
	d.UpsertEndpoint(ctx, Endpoint{Name: "b"})
	long := strings.Repeat("x", 200)
	total := 0
	for i := 0; i < 40; i++ {
		ls := make([]LogEntry, 250)
		for j := range ls {
			ls[j] = LogEntry{Severity: -1, Line: fmt.Sprintf("%06d %s", total, long)}
			total++
		}
		if err := d.IngestLogs(LogBatch{Endpoint: "a", Lines: ls}); err != nil {
			t.Fatal(err)
		}
		flushLogs(t, d)
		u, err := d.LogUsage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if u.Bytes > limit {
			t.Fatalf("after %d lines: %d bytes stored, cap %d", total, u.Bytes, limit)
		}
	}
	var lines, bytes int64
	if err := d.r.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(length(CAST(line AS BLOB)) + ?), 0) FROM device_log`, logRowOverhead).Scan(&lines, &bytes); err != nil {
		t.Fatal(err)
	}
	u, _ := d.LogUsage(ctx)
	if u.Lines != lines || u.Bytes != bytes {
		t.Fatalf("running count %+v, table has %d lines, %d bytes", u, lines, bytes)
	}
	// The newest line is kept, the oldest gone.
	newest, _ := d.QueryLogs(ctx, LogQuery{Limit: 1, Severity: -1, Class: -1})
	if len(newest) != 1 || !strings.HasPrefix(newest[0].Line, fmt.Sprintf("%06d", total-1)) {
		t.Fatalf("newest %+v", newest)
	}
	if first, _ := d.QueryLogs(ctx, LogQuery{Text: "000000 ", Severity: -1, Class: -1}); len(first) != 0 {
		t.Fatal("the oldest line survived the size cap")
	}
	if d.LogStats().Deleted == 0 {
		t.Fatal("no deletion counted")
	}
	// Deleting a device removes its lines from the count as well.
	if err := d.AddDeviceLog(ctx, "b", time.Now(), "b1", "b2"); err != nil {
		t.Fatal(err)
	}
	before, _ := d.LogUsage(ctx)
	if err := d.DeleteEndpoint(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	after, _ := d.LogUsage(ctx)
	if before.Lines-after.Lines != 2 {
		t.Fatalf("delete endpoint: %d → %d lines", before.Lines, after.Lines)
	}
}

func TestLogRetentionByAge(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	d := openTest(t, WithClock(func() time.Time { return now }))
	d.UpsertEndpoint(ctx, Endpoint{Name: "a"})
	d.SetLogRetention(7*24*time.Hour, 0)
	// Received 8 days ago, though the device's clock says yesterday.
	old := LogBatch{Endpoint: "a", Received: now.Add(-8 * 24 * time.Hour), Lines: []LogEntry{{Line: "old", Severity: -1, Time: now.Add(-24 * time.Hour)}}}
	if _, err := d.commitLogs(ctx, []*logBatch{{LogBatch: old}}); err != nil {
		t.Fatal(err)
	}
	// Received now, though the device's clock says 1970.
	fresh := LogBatch{Endpoint: "a", Received: now, Lines: []LogEntry{{Line: "fresh", Severity: -1, Time: time.Unix(5, 0)}}}
	if _, err := d.commitLogs(ctx, []*logBatch{{LogBatch: fresh}}); err != nil {
		t.Fatal(err)
	}
	r, err := d.ApplyLogRetention(ctx)
	if err != nil || r.Aged != 1 {
		t.Fatalf("retention %+v %v", r, err)
	}
	left, _ := d.QueryLogs(ctx, LogQuery{Severity: -1, Class: -1})
	if len(left) != 1 || left[0].Line != "fresh" {
		t.Fatalf("left %+v", left)
	}
	if age, size := d.LogRetention(); age != 7*24*time.Hour || size != 0 {
		t.Fatalf("LogRetention %v %d", age, size)
	}
}

func BenchmarkIngestLogs(b *testing.B) {
	ctx := context.Background()
	d := openTest(b, WithLogConfig(LogConfig{QueueLines: 1 << 20, EndpointShare: 1 << 20, MaxBytes: -1}))
	runLogs(b, d)
	d.UpsertEndpoint(ctx, Endpoint{Name: "dev"})
	const perBatch = 100
	lines := make([]LogEntry, perBatch)
	for i := range lines {
		lines[i] = LogEntry{Severity: lwm2m.SeverityInfo, Class: 0, Line: fmt.Sprintf("[00:00:%02d.000,000] <inf> app: reading %d ok, temperature 21.5 C", i%60, i)}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for {
			err := d.IngestLogs(LogBatch{Endpoint: "dev", Lines: lines})
			if err == nil {
				break
			}
			if !errors.Is(err, ErrQueueFull) {
				b.Fatal(err)
			}
			if err := d.FlushLogs(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := d.FlushLogs(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	n := float64(b.N * perBatch)
	b.ReportMetric(n/b.Elapsed().Seconds(), "lines/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/line")
}

// A database whose logs were written before migration 0005 keeps them:
// reception time from t, no severity, the size count matching the table.
func TestUpgradeKeepsDeviceLogs(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	raw, err := openRaw(cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, raw, 3); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO endpoint(name, online, lifetime, created) VALUES ('old-dev', 1, 300, 1000)`,
		`INSERT INTO device_log(endpoint_id, t, line) VALUES (1, 1700000000000, 'boot'), (1, 1700000001000, 'net up')`,
	} {
		if _, err := raw.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()
	d := openWith(t, cfg)
	ls, err := d.QueryLogs(ctx, LogQuery{Endpoint: "old-dev", Severity: -1, Class: -1})
	if err != nil || len(ls) != 2 || ls[0].Line != "net up" || ls[0].Severity != lwm2m.SeverityUnknown || ls[0].Class != 0 {
		t.Fatalf("after upgrade: %+v %v", ls, err)
	}
	var recv int64
	d.r.QueryRowContext(ctx, `SELECT received FROM device_log WHERE line = 'boot'`).Scan(&recv)
	if recv != 1700000000000 {
		t.Fatalf("received %d", recv)
	}
	if u, _ := d.LogUsage(ctx); u.Lines != 2 || u.Bytes != int64(len("boot")+len("net up")+2*logRowOverhead) {
		t.Fatalf("usage after upgrade %+v", u)
	}
}

// IngestLogsThen reports the commit: nil once the lines are stored, the
// error when they cannot be (an endpoint deleted meanwhile).
func TestIngestLogsThen(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	runLogs(t, d)
	d.UpsertEndpoint(ctx, Endpoint{Name: "a"})
	got := make(chan error, 2)
	if err := d.IngestLogsThen(LogBatch{Endpoint: "a", Lines: logLines("x", 3, -1, 0)}, func(err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("committed: %v", err)
	}
	if u, _ := d.LogUsage(ctx); u.Lines != 3 {
		t.Fatalf("%d lines at the callback", u.Lines)
	}
	if err := d.IngestLogsThen(LogBatch{Endpoint: "ghost", Lines: logLines("x", 1, -1, 0)}, func(err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	if err := d.IngestLogsThen(LogBatch{Endpoint: "a"}, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no callback: %v", err)
	}
	if st := d.LogStats(); st.FailedLines != 1 {
		t.Fatalf("failed %d", st.FailedLines)
	}
}
