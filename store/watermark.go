package store

import (
	"context"
	"database/sql"
)

// Row ids of the raw "resource" table are not AUTOINCREMENT: SQLite gives
// a new row max(rowid)+1, and 1 when the table is empty. Compaction often
// empties it (every step at low load), and the ids then start again below
// the series' compaction watermarks, which would make the next readings
// look packed already: skipped and deleted by the next compaction, hidden
// after a restart. So whoever empties the table resets every watermark in
// the same transaction, and in memory before anyone can read them.

// deleteCompacted deletes the raw rows up to maxRow that compaction
// packed; the writer calls it.
func (d *DB) deleteCompacted(ctx context.Context, maxRow int64) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM resource WHERE id <= ?`, maxRow); err != nil {
		return err
	}
	return d.commitResettingMarks(ctx, tx)
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
