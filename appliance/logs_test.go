package appliance

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
)

func collectorEnv(t *testing.T) (*logCollector, *store.DB) {
	t.Helper()
	db := openTestStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = db.RunLogs(ctx) }()
	t.Cleanup(func() { cancel(); <-done }) // before openTestStore's Close
	if _, err := db.UpsertEndpoint(ctx, store.Endpoint{Name: "dev"}); err != nil {
		t.Fatal(err)
	}
	return newLogCollector(db, slog.New(slog.DiscardHandler)), db
}

func logData(s string) lwm2m.Record {
	return lwm2m.Record{Path: lwm2m.NewPath(20, 0, 4014), Value: lwm2m.Opaque([]byte(s))}
}

func storedLines(t *testing.T, db *store.DB) []string {
	t.Helper()
	ctx := context.Background()
	if err := db.FlushLogs(ctx); err != nil {
		t.Fatal(err)
	}
	ls, err := db.QueryLogs(ctx, store.LogQuery{Endpoint: "dev", Severity: -1, Class: -1, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		out[len(ls)-1-i] = l.Line
	}
	return out
}

// The collector stores each line once whether the device's LogData grows
// (every value the whole collection since LogStart) or holds new lines
// only; an empty value or the same value again adds nothing; other
// records pass through as telemetry; class and format come along.
func TestLogCollectorLinesOnce(t *testing.T) {
	c, db := collectorEnv(t)
	steps := []struct {
		recs []lwm2m.Record
		rest int
	}{
		{[]lwm2m.Record{logData(""), {Path: lwm2m.NewPath(20, 0, 4010), Value: lwm2m.Int(2)}}, 1},
		{[]lwm2m.Record{logData("a\n")}, 0},
		{[]lwm2m.Record{logData("a\nb\n")}, 0},    // grew
		{[]lwm2m.Record{logData("a\nb\n")}, 0},    // the same again (a read)
		{[]lwm2m.Record{logData("")}, 0},          // raced empty value
		{[]lwm2m.Record{logData("a\nb\nc\n")}, 0}, // grew
		{[]lwm2m.Record{logData("d\n")}, 0},       // emptied and new
		{[]lwm2m.Record{{Path: lwm2m.NewPath(3303, 0, 5700), Value: lwm2m.Float(1)}}, 1},
	}
	for i, s := range steps {
		rest, err := c.take("dev", s.recs, false)
		if err != nil || len(rest) != s.rest {
			t.Fatalf("step %d: rest %v, %v", i, rest, err)
		}
	}
	if got := strings.Join(storedLines(t, db), ","); got != "a,b,c,d" {
		t.Fatalf("stored %q", got)
	}
	ls, _ := db.QueryLogs(context.Background(), store.LogQuery{Endpoint: "dev", Severity: -1, Class: -1})
	if ls[0].Class != 2 {
		t.Fatalf("class %d", ls[0].Class)
	}
	// LogDataIncremental (4016) is new data by definition.
	inc := lwm2m.Record{Path: lwm2m.NewPath(20, 0, 4016), Value: lwm2m.Opaque([]byte("d\n"))}
	if _, err := c.take("dev", []lwm2m.Record{inc}, true); err != nil {
		t.Fatal(err)
	}
	if got := len(storedLines(t, db)); got != 5 {
		t.Fatalf("%d lines after LogDataIncremental", got)
	}
}

// Oversize: a pushed value over the limit is refused with ErrTooLarge (4.13)
// and nothing is stored; a read one is cut; too many lines are cut; a full
// queue is ErrQueueFull (5.03) and the next value is taken whole.
func TestLogCollectorLimits(t *testing.T) {
	c, db := collectorEnv(t)
	big := strings.Repeat("x", maxLogRecord+10)
	_, err := c.take("dev", []lwm2m.Record{logData(big)}, true)
	if !errors.Is(err, server.ErrTooLarge) || c.stats().TooLarge != 1 {
		t.Fatalf("pushed oversize: %v", err)
	}
	if n := len(storedLines(t, db)); n != 0 {
		t.Fatalf("%d lines stored from a refused value", n)
	}
	if _, err := c.take("dev", []lwm2m.Record{logData(big)}, false); err != nil {
		t.Fatal(err)
	}
	ls := storedLines(t, db)
	if c.stats().Cut != 1 || !strings.Contains(ls[len(ls)-1], "cut to its first") {
		t.Fatalf("read oversize: %d lines, cut %d", len(ls), c.stats().Cut)
	}
	many := strings.Repeat("line\n", maxLogLines+5)
	if _, err := c.take("dev", []lwm2m.Record{logData(many)}, true); err != nil {
		t.Fatal(err)
	}
	if c.stats().Cut != 2 {
		t.Fatalf("cut %d after too many lines", c.stats().Cut)
	}
}
