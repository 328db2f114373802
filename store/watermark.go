package store

import (
	"context"
	"database/sql"
	"time"
)

// Row ids of the raw "resource" table are not AUTOINCREMENT: SQLite would
// give a new row max(rowid)+1, and 1 when the table is empty. Compaction
// often empties it (every step at low load), and so can a device's
// deletion between two of a compaction step's pages; ids that started
// again below the series' compaction watermarks, or below the row a step
// is deleting up to, would make the next readings look packed already:
// skipped and deleted by the next compaction or page, hidden after a
// restart. So the writer gives the ids itself (telemetryCache.nextRow,
// started above every id and watermark at open) and they only grow, and
// whoever empties the table still resets every watermark in the same
// transaction, and in memory before anyone can read them, which keeps
// them small.

// deleteCompacted deletes the raw rows up to maxRow that compaction
// packed (rows of them, unless a device's deletion took some),
// compactScanPage rows a transaction with the waiting readings committed
// between them; the writer calls it. A crash between two leaves
// packed rows that the watermarks skip.
func (d *DB) deleteCompacted(ctx context.Context, maxRow int64, rows int) error {
	for left := int64(rows); left > 0; {
		n, err := d.deleteCompactedPage(ctx, maxRow)
		if err != nil || n < compactScanPage {
			return err
		}
		if left -= n; left > 0 {
			d.writeWaiting(ctx)
		}
	}
	return nil
}

// deleteCompactedPage deletes one page. It commits without an fsync of
// its own (see lazysync.go) when the database syncs every commit: a
// delete lost to a power cut leaves rows that the watermarks, committed
// under FULL before it, mark as packed, and the next compaction deletes
// them again.
func (d *DB) deleteCompactedPage(ctx context.Context, maxRow int64) (int64, error) {
	defer d.noteCompactLock(time.Now())
	lazy := d.syncsEveryCommit()
	tx, end, err := d.beginWrite(ctx, lazy)
	if err != nil {
		return 0, err
	}
	defer end()
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM resource WHERE id IN (SELECT id FROM resource WHERE id <= ? ORDER BY id LIMIT ?)`, maxRow, compactScanPage)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, err
	}
	if err := d.commitResettingMarks(ctx, tx); err != nil {
		return 0, err
	}
	d.committed(lazy)
	return n, nil
}

// commitResettingMarks commits tx, which deleted raw rows; when the raw
// table is empty afterwards it resets every series' watermark to 0 in tx
// and in memory, atomically for readers of the watermarks.
func (d *DB) commitResettingMarks(ctx context.Context, tx *sql.Tx) error {
	var left bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM resource)`).Scan(&left); err != nil {
		return err
	}
	if !left {
		if _, err := tx.ExecContext(ctx, `UPDATE series SET compacted_row = 0 WHERE compacted_row != 0`); err != nil {
			return err
		}
	}
	d.tel.view.Lock()
	defer d.tel.view.Unlock()
	if err := tx.Commit(); err != nil {
		return err
	}
	if !left {
		clear(d.tel.marks)
	}
	return nil
}

// txResettingMarks is DB.tx for transactions that delete raw rows of
// some series (deleting a device): see commitResettingMarks.
func (d *DB) txResettingMarks(ctx context.Context, fn func(*sql.Tx) error) error {
	if d.closed.Load() {
		return ErrClosed
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return d.commitResettingMarks(ctx, tx)
}
