package store

import (
	"context"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// runWriter starts Run for the test's lifetime and stops it at cleanup.
func runWriter(t testing.TB, d *DB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// ingestOne ingests one float reading now and waits for its commit.
func ingestOne(t testing.TB, d *DB, ep, path string, v float64) {
	t.Helper()
	if err := d.Ingest(Batch{Endpoint: ep, Received: d.now(), Records: []lwm2m.Record{{Path: lwm2m.MustParsePath(path), Value: lwm2m.Float(v)}}}); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
}

func flush(t testing.TB, d *DB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// nextNote is the next note for a subscriber; a missing one fails the
// test instead of hanging it.
func nextNote(t *testing.T, notes <-chan Committed) Committed {
	t.Helper()
	select {
	case n := <-notes:
		return n
	case <-time.After(30 * time.Second):
		t.Fatal("no note for a subscriber")
		return Committed{}
	}
}
