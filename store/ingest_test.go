package store

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

func rec(path string, v lwm2m.Value, t time.Time) lwm2m.Record {
	return lwm2m.Record{Path: lwm2m.MustParsePath(path), Value: v, Time: t}
}

func TestIngestAndLatest(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now), WithRegistry(lwm2m.NewRegistry()))
	runWriter(t, d)
	sub, cancel := d.Subscribe(16)
	defer cancel()
	t0 := c.now()
	all := []lwm2m.Value{lwm2m.String("Zephyr"), lwm2m.Int(-5), lwm2m.Uint(math.MaxUint64), lwm2m.Float(21.5), lwm2m.Bool(true),
		lwm2m.Opaque([]byte{0, 1, 2}), lwm2m.TimeUnix(1700000000), lwm2m.ObjlnkValue(lwm2m.Objlnk{ObjectID: 3, InstanceID: 1}), lwm2m.Corelnk("</3/0>")}
	var recs []lwm2m.Record
	for i, v := range all {
		recs = append(recs, rec(fmt.Sprintf("/9999/0/%d", i), v, t0))
	}
	if err := d.Ingest(Batch{Endpoint: "dev", Received: t0, Records: recs}); err != nil {
		t.Fatal(err)
	}
	// An older reading must not replace the latest.
	d.Ingest(Batch{Endpoint: "dev", Records: []lwm2m.Record{rec("/9999/0/3", lwm2m.Float(1), t0.Add(-time.Hour))}})
	flush(t, d)
	got, err := d.Latest(ctx, "dev")
	if err != nil || len(got) != len(all) {
		t.Fatalf("Latest: %v %v", got, err)
	}
	for i, r := range got {
		if !r.Value.Equal(all[i]) || !r.Time.Equal(t0) {
			t.Errorf("latest %s = %v at %v, want %v", r.Path, r.Value, r.Time, all[i])
		}
	}
	select {
	case n := <-sub:
		if n.Endpoint != "dev" || len(n.Records) != len(all) {
			t.Fatalf("notification: %+v", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after commit")
	}
	e, _ := d.Endpoint(ctx, "dev")
	if !e.LastSeen.Equal(t0) {
		t.Fatalf("last_seen %v, want %v", e.LastSeen, t0)
	}
	// Readings come back typed from the tail, and from chunks after
	// compaction.
	for _, phase := range []string{"tail", "chunks"} {
		for i, v := range all {
			pts, err := d.Readings(ctx, "dev", lwm2m.NewPath(9999, 0, uint16(i)), t0.Add(-2*time.Hour), t0, 0)
			want := 1
			if i == 3 {
				want = 2
			}
			if err != nil || len(pts) != want || !pts[len(pts)-1].V.Equal(v) {
				t.Fatalf("%s: readings of %d: %v %v", phase, i, pts, err)
			}
		}
		if phase == "tail" {
			if _, err := d.compact(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			if st := d.Stats(); st.TailRecords != 0 || st.CompactedRecords != uint64(len(all)+1) {
				t.Fatalf("after compaction: %+v", st)
			}
		}
	}
	st := d.Stats()
	if st.Accepted != 2 || st.CommittedRecords != uint64(len(all)+1) || st.Transactions == 0 {
		t.Fatalf("stats: %+v", st)
	}
	if _, err := d.Latest(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("latest of unknown: %v", err)
	}
}

func TestIngestRefusals(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueSize = 2
	d := openWith(t, cfg)
	b := Batch{Endpoint: "dev", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(1), time.Time{})}}
	// No writer runs: the queue fills up and refuses.
	if err := d.Ingest(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(b); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third batch: %v, want ErrQueueFull", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.IngestWait(ctx, b); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("IngestWait on a full queue: %v", err)
	}
	if st := d.Stats(); st.Refused != 2 || st.Accepted != 2 || st.QueueLen != 2 {
		t.Fatalf("stats: %+v", st)
	}
	if err := d.Ingest(Batch{Records: b.Records}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("no endpoint: %v", err)
	}
	if err := d.Ingest(Batch{Endpoint: "dev", Records: []lwm2m.Record{rec("/3303/0", lwm2m.Float(1), time.Time{})}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("instance path: %v", err)
	}
	// Close commits what was accepted even though Run never ran.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(b); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	d2 := openWith(t, cfg)
	pts, err := d2.Readings(context.Background(), "dev", lwm2m.MustParsePath("/3303/0/5700"), time.Unix(0, 0), time.Now().Add(time.Hour), 0)
	if err != nil || len(pts) != 2 {
		t.Fatalf("accepted readings after Close: %v %v", pts, err)
	}
}

func TestSlowSubscriberDoesNotBlock(t *testing.T) {
	d := openTest(t)
	runWriter(t, d)
	_, cancel := d.Subscribe(1) // never read
	defer cancel()
	for i := 0; i < 5; i++ {
		ingestOne(t, d, "dev", "/3303/0/5700", float64(i))
	}
	if st := d.Stats(); st.SubscriberDrops < 4 || st.CommittedRecords != 5 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestCompositeEventsAndRegistrations(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	runWriter(t, d)
	t0 := c.now()
	if err := d.RecordRegistration(ctx, "dev", RegRegistered, t0, "lt=300"); err != nil {
		t.Fatal(err)
	}
	err := d.Ingest(Batch{Endpoint: "dev", Received: t0.Add(time.Second), Event: EventComposite, Records: []lwm2m.Record{
		rec("/3303/0/5700", lwm2m.Float(21.5), time.Time{}), rec("/3304/0/5700", lwm2m.Float(40), time.Time{})}})
	if err != nil {
		t.Fatal(err)
	}
	d.RecordRegistration(ctx, "dev", RegUpdated, t0.Add(2*time.Second), "")
	d.RecordRegistration(ctx, "dev", RegUpdated, t0.Add(3*time.Second), "")
	if err := d.RecordRegistration(ctx, "dev", 7, t0, ""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad kind: %v", err)
	}
	flush(t, d)
	evs, err := d.Events(ctx, EventQuery{Endpoint: "dev"})
	if err != nil || len(evs) != 4 {
		t.Fatalf("Events: %+v %v", evs, err)
	}
	comp := evs[2]
	if comp.Kind != EventComposite || len(comp.Resources) != 2 || comp.Resources[0].Path != "/3303/0/5700" || comp.Resources[0].Value != "21.5" {
		t.Fatalf("composite event: %+v", comp)
	}
	if evs[3].Kind != EventRegistered || evs[3].Detail != "lt=300" || len(evs[3].Resources) != 1 || evs[3].Resources[0].Path != "/10240/0/0" {
		t.Fatalf("registration event: %+v", evs[3])
	}
	page, _ := d.Events(ctx, EventQuery{Endpoint: "dev", BeforeID: evs[1].ID, Limit: 1})
	if len(page) != 1 || page[0].ID != comp.ID {
		t.Fatalf("events page: %+v", page)
	}
	if up, _ := d.Events(ctx, EventQuery{Kind: EventUpdated}); len(up) != 2 {
		t.Fatalf("updated events: %d", len(up))
	}
	// Registrations are counted like any resource.
	n, err := d.CountReadings(ctx, "dev", lwm2m.NewPath(RegistrationObject, 0, RegUpdated), t0, t0.Add(time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("updates counted: %d %v", n, err)
	}
}

func TestChartSources(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	runWriter(t, d)
	// Two days of one reading every 30 s: 5760 readings.
	start := c.now().Add(-48 * time.Hour)
	var recs []lwm2m.Record
	for i := 0; i < 5760; i++ {
		recs = append(recs, rec("/3303/0/5700", lwm2m.Float(float64(i%100)), start.Add(time.Duration(i)*30*time.Second)))
	}
	if err := d.Ingest(Batch{Endpoint: "dev", Records: recs}); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	p := lwm2m.MustParsePath("/3303/0/5700")
	check := func(phase string) {
		t.Helper()
		// 10 minutes: 20 raw points as they are.
		ch, err := d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: start.Add(10*time.Minute - time.Millisecond)})
		if err != nil || ch.Source != SourceRaw || len(ch.Points) != 20 || ch.Points[3].Mean != 3 || ch.Points[3].Count != 1 {
			t.Fatalf("%s: 10 min chart: %s %d %v", phase, ch.Source, len(ch.Points), err)
		}
		// 6 hours with 100 points: raw downsampled, every reading counted.
		ch, err = d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: start.Add(6*time.Hour - time.Millisecond), MaxPoints: 100, Source: SourceRaw})
		if err != nil || len(ch.Points) > 100 || sumCount(ch.Points) != 720 {
			t.Fatalf("%s: 6 h raw chart: %d points, %d readings, %v", phase, len(ch.Points), sumCount(ch.Points), err)
		}
		// 24 hours with few readings: raw by default, downsampled.
		ch, err = d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: start.Add(24*time.Hour - time.Millisecond)})
		if err != nil || len(ch.Points) > 1000 || sumCount(ch.Points) != 2880 || ch.Source != SourceRaw {
			t.Fatalf("%s: 24 h chart: %s %d points, %d readings, %v", phase, ch.Source, len(ch.Points), sumCount(ch.Points), err)
		}
		// Minute roll-ups (of the compacted part) plus the tail count
		// every reading once.
		ch, err = d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: start.Add(24*time.Hour - time.Millisecond), Source: SourceMinute})
		if err != nil || len(ch.Points) > 1000 || sumCount(ch.Points) != 2880 || ch.Source != SourceMinute {
			t.Fatalf("%s: 24 h chart: %s %d points, %d readings, %v", phase, ch.Source, len(ch.Points), sumCount(ch.Points), err)
		}
		for _, q := range ch.Points {
			if q.Min > q.Mean || q.Mean > q.Max || q.Min < 0 || q.Max > 99 {
				t.Fatalf("%s: bad bucket %+v", phase, q)
			}
		}
		ch, err = d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: start.Add(48 * time.Hour), Source: SourceHour})
		if err != nil || sumCount(ch.Points) != 5760 || len(ch.Points) != 48 {
			t.Fatalf("%s: hour chart: %d points %d readings %v", phase, len(ch.Points), sumCount(ch.Points), err)
		}
	}
	check("tail")
	if _, err := d.compact(ctx, 1000); err != nil { // a partial step first
		t.Fatal(err)
	}
	check("partly compacted")
	for d.rawRows.Load() > 0 {
		if _, err := d.compact(ctx, 1000); err != nil {
			t.Fatal(err)
		}
	}
	check("compacted")
	if _, err := d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: start}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty range: %v", err)
	}
	if _, err := d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: p, From: start, To: c.now(), Source: "daily"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad source: %v", err)
	}
	if _, err := d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: lwm2m.MustParsePath("/3/0/0"), From: start, To: c.now()}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown series: %v", err)
	}
}

func sumCount(ps []ChartPoint) int64 {
	var n int64
	for _, p := range ps {
		n += p.Count
	}
	return n
}

func TestExportCSV(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	runWriter(t, d)
	t0 := time.Date(2026, 2, 27, 23, 59, 59, 500_000_000, time.UTC)
	d.Ingest(Batch{Endpoint: "dev", Records: []lwm2m.Record{
		rec("/3/0/0", lwm2m.String(`Acme, "Inc"`+"\nline2"), t0),
		rec("/3303/0/5700", lwm2m.Float(21.25), t0),
		rec("/3303/0/5700", lwm2m.Float(22), t0.Add(36*time.Hour)),
	}})
	flush(t, d)
	var buf bytes.Buffer
	if err := d.ExportCSV(ctx, &buf, ExportQuery{Endpoint: "dev", From: t0.Add(-time.Hour), To: t0.Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasPrefix(out, "endpoint,path,time,type,value\r\n") {
		t.Fatalf("header: %q", out)
	}
	if !strings.Contains(out, "\"Acme, \"\"Inc\"\"\r\nline2\"") {
		t.Fatalf("quoting: %q", out)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 4 {
		t.Fatalf("parse back: %v %v", rows, err)
	}
	if rows[2][2] != "2026-02-27T23:59:59.500Z" || rows[2][4] != "21.25" || rows[3][2] != "2026-03-01T11:59:59.500Z" || rows[1][3] != "string" {
		t.Fatalf("rows: %q", rows)
	}
	buf.Reset()
	d.ExportCSV(ctx, &buf, ExportQuery{Endpoint: "dev", Paths: []lwm2m.Path{lwm2m.MustParsePath("/3303/0/5700")}, From: t0, To: t0.Add(time.Hour)})
	if strings.Count(buf.String(), "\r\n") != 2 {
		t.Fatalf("path filter: %q", buf.String())
	}
	if err := d.ExportCSV(ctx, &buf, ExportQuery{Endpoint: "nobody", From: t0, To: t0}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	if err := d.ExportCSV(ctx, &buf, ExportQuery{Endpoint: "dev", From: t0, To: t0.Add(-time.Second)}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reversed range: %v", err)
	}
}

// TestBadBatchDoesNotSinkOthers: a batch that cannot be written (its
// endpoint vanished under the writer's cache) is dropped and counted; the
// batches committed with it survive.
func TestBadBatchDoesNotSinkOthers(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	d := openWith(t, cfg)
	runWriterUntil := func() {
		d.drainQueue(ctx)
	}
	d.Ingest(Batch{Endpoint: "b", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(1), time.Time{})}})
	runWriterUntil()
	if _, err := d.w.ExecContext(ctx, `DELETE FROM endpoint WHERE name = 'b'`); err != nil {
		t.Fatal(err)
	}
	d.Ingest(Batch{Endpoint: "a", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(2), time.Time{})}})
	d.Ingest(Batch{Endpoint: "b", Records: []lwm2m.Record{rec("/3304/0/5700", lwm2m.Float(3), time.Time{})}})
	runWriterUntil()
	if st := d.Stats(); st.Failed != 1 {
		t.Fatalf("failed batches: %+v", st)
	}
	if l, err := d.Latest(ctx, "a"); err != nil || len(l) != 1 || l[0].Value.Float() != 2 {
		t.Fatalf("good batch lost: %v %v", l, err)
	}
}

func TestIngestRefusesBeyondQueuedReadings(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueRecords = 3
	d := openWith(t, cfg)
	two := Batch{Endpoint: "dev", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(1), time.Time{}), rec("/3303/0/5701", lwm2m.String("C"), time.Time{})}}
	if err := d.Ingest(two); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(two); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("beyond QueueRecords: %v", err)
	}
	d.drainQueue(context.Background())
	// Once drained, room again; and one oversized batch on an empty
	// queue is accepted rather than refused forever.
	big := Batch{Endpoint: "dev", Records: append(append([]lwm2m.Record{}, two.Records...), two.Records...)}
	if err := d.Ingest(big); err != nil {
		t.Fatalf("oversized batch on an empty queue: %v", err)
	}
	if st := d.Stats(); st.Refused != 1 || st.CommittedRecords != 2 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestIngestThenQueuesTwiceTheReadings: a batch whose device waits for
// its commit is refused only beyond twice QueueRecords, readings
// acknowledged before their commit still at QueueRecords; both count in
// the one queue.
func TestIngestThenQueuesTwiceTheReadings(t *testing.T) {
	cfg := testConfig(t)
	cfg.QueueRecords = 4
	d := openWith(t, cfg)
	two := Batch{Endpoint: "dev", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(1), time.Time{}), rec("/3303/0/5701", lwm2m.String("C"), time.Time{})}}
	var stored atomic.Int32
	then := func(err error) {
		if err == nil {
			stored.Add(1)
		}
	}
	for i := range 4 { // 8 readings: twice QueueRecords
		if err := d.IngestThen(two, then); err != nil {
			t.Fatalf("IngestThen %d within twice QueueRecords: %v", i, err)
		}
		if i == 1 { // 4 readings queued: QueueRecords
			if err := d.Ingest(two); !errors.Is(err, ErrQueueFull) {
				t.Fatalf("Ingest beyond QueueRecords: %v", err)
			}
		}
	}
	if err := d.IngestThen(two, then); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("IngestThen beyond twice QueueRecords: %v", err)
	}
	d.drainQueue(context.Background())
	if st := d.Stats(); st.Refused != 2 || st.CommittedRecords != 8 {
		t.Fatalf("stats: %+v", st)
	}
	awaitStore(t, "the commit callbacks", func() bool { return stored.Load() == 4 })
}

// TestManyCompositeEventsInOneTransaction: more events and links than one
// multi-row INSERT holds commit together, each event with its readings.
func TestManyCompositeEventsInOneTransaction(t *testing.T) {
	ctx := context.Background()
	d := openTest(t)
	for i := 0; i < 300; i++ {
		d.Ingest(Batch{Endpoint: fmt.Sprintf("dev-%d", i%7), Event: EventComposite, Records: []lwm2m.Record{
			rec("/3303/0/5700", lwm2m.Float(float64(i)), time.Time{}), rec("/3304/0/5700", lwm2m.Float(float64(-i)), time.Time{})}})
	}
	d.drainQueue(ctx)
	if st := d.Stats(); st.Transactions != 1 || st.Failed != 0 {
		t.Fatalf("want one transaction, no failures: %+v", st)
	}
	evs, err := d.Events(ctx, EventQuery{Limit: 1000})
	if err != nil || len(evs) != 300 {
		t.Fatalf("events: %d %v", len(evs), err)
	}
	for _, e := range evs {
		if len(e.Resources) != 2 || e.Resources[1].Value != "-"+e.Resources[0].Value && e.Resources[0].Value != "0" {
			t.Fatalf("event %d: %+v", e.ID, e.Resources)
		}
	}
}

// TestIngestRefusesWhileWriterStalls: with readings waiting and the
// writer stuck in one piece of work for more than half the flush
// interval, Ingest refuses rather than accept a reading it could not
// commit in time; a writer that was merely idle that long does not
// refuse, nor does IngestThen, whose device waits for the commit.
func TestIngestRefusesWhileWriterStalls(t *testing.T) {
	cfg := testConfig(t)
	d := openWith(t, cfg)
	b := Batch{Endpoint: "dev", Records: []lwm2m.Record{rec("/3303/0/5700", lwm2m.Float(1), time.Time{})}}
	// An idle writer (waiting for work, nothing since long ago): a burst
	// is accepted.
	d.busySince.Store(0)
	if err := d.Ingest(b); err != nil {
		t.Fatal(err)
	}
	if err := d.Ingest(b); err != nil {
		t.Fatalf("idle writer: %v", err)
	}
	// Stand in for a Run whose writer just started a transaction.
	d.busySince.Store(time.Now().UnixNano())
	if err := d.Ingest(b); err != nil {
		t.Fatalf("writer just started: %v", err)
	}
	// And one stuck in it for a whole flush interval.
	d.busySince.Store(time.Now().Add(-cfg.FlushInterval).UnixNano())
	if err := d.Ingest(b); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("stalled writer: %v, want ErrQueueFull", err)
	}
	// A reading acknowledged only after its commit waits in the queue
	// instead: its device waits for the answer either way.
	committed := make(chan error, 1)
	if err := d.IngestThen(b, func(err error) { committed <- err }); err != nil {
		t.Fatalf("stalled writer, IngestThen: %v", err)
	}
	d.busySince.Store(0)
	d.drainQueue(context.Background())
	if err := <-committed; err != nil {
		t.Fatalf("IngestThen's commit: %v", err)
	}
	if st := d.Stats(); st.Refused != 1 || st.CommittedRecords != 4 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestChartPointsNotBeforeTheData: a downsampled point is stamped no
// earlier than the first reading it summarises, so a long-range chart
// does not show data from before a device existed.
func TestChartPointsNotBeforeTheData(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	d := openTest(t, WithClock(c.now))
	runWriter(t, d)
	first := c.now().Add(-90 * time.Minute)
	var recs []lwm2m.Record
	for i := 0; i < 300; i++ {
		recs = append(recs, rec("/3303/0/5700", lwm2m.Float(20), first.Add(time.Duration(i)*10*time.Second)))
	}
	if err := d.Ingest(Batch{Endpoint: "dev", Records: recs}); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	ch, err := d.Chart(ctx, ChartQuery{Endpoint: "dev", Path: lwm2m.MustParsePath("/3303/0/5700"),
		From: c.now().Add(-30 * 24 * time.Hour), To: c.now(), MaxPoints: 10, Source: SourceRaw})
	if err != nil || len(ch.Points) == 0 {
		t.Fatalf("chart: %d points, %v", len(ch.Points), err)
	}
	for _, p := range ch.Points {
		if p.T.Before(first) {
			t.Errorf("point at %s, before the first reading at %s", p.T, first)
		}
	}
}
