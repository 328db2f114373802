package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestCompactionAfterEmptyTable: compaction can leave the raw "resource"
// table empty, and SQLite then hands out row ids from 1 again (a rowid
// table without AUTOINCREMENT takes max(rowid)+1). Readings stored after
// that must not be mistaken for rows below the series' compaction
// watermark: neither skipped and deleted by the next compaction nor
// hidden after a restart.
func TestCompactionAfterEmptyTable(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "reuse.db")
	d := openWith(t, cfg)
	runWriter(t, d)
	if err := d.Ingest(tempBatch("dev", 0, 500)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	var rows int
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM resource`).Scan(&rows)
	if rows != 0 {
		t.Fatalf("%d raw rows left after compaction; the test needs an empty table", rows)
	}
	if err := d.Ingest(tempBatch("dev", 1000, 10)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	if got := len(storedSeqs(t, d, "dev")); got != 510 {
		t.Fatalf("%d readings before the second compaction, want 510", got)
	}
	if err := d.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(storedSeqs(t, d, "dev")); got != 510 {
		t.Fatalf("%d readings after the second compaction, want 510", got)
	}
	// And across a restart with uncompacted rows.
	if err := d.Ingest(tempBatch("dev", 2000, 10)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	d.Compact(ctx)
	if err := d.Ingest(tempBatch("dev", 3000, 10)); err != nil {
		t.Fatal(err)
	}
	flush(t, d)
	d.Close()
	d2 := openWith(t, cfg)
	if got := len(storedSeqs(t, d2, "dev")); got != 530 {
		t.Fatalf("%d readings after a restart, want 530", got)
	}
}
