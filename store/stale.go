package store

import (
	"context"
	"database/sql"
	"errors"
)

// staleTime is the time a reading of a stale batch (Batch.Stale: a
// notification older than one already delivered, RFC 7641 §3.4) is
// stored at when the device gave it no time of its own.
//
// The latest value of a series is its reading with the greatest time —
// in the writer's memory (mergeLatestLocked), in the latest table
// (upsertLatest, at compaction) and after a restart (loadTelemetry) — so
// stamping the reading with its reception time, after the newer reading
// already stored, would make it the latest value shown, at once or at
// the next compaction. Keeping the reception time and still not letting
// it win would need a mark on every stored reading (a schema change).
// The reading was taken before the newer one, though: it keeps its
// reception time when that is before the series' newest reading (its
// own reception time, usually), and is placed 1 ms before that reading
// otherwise. History then shows the values in the order the device took
// them, and no latest value regresses. The batch's reception time (its
// event, last seen) is unchanged.
//
// pending holds the newest readings of the transaction being built; the
// caller is the writer, inside tx.
func (d *DB) staleTime(ctx context.Context, tx *sql.Tx, series int64, pending map[int64]latestRow, recv int64) (int64, error) {
	newest, ok := pending[series]
	d.tel.view.RLock()
	if c, cok := d.tel.latest[series]; cok && (!ok || c.t > newest.t) {
		newest, ok = c, true
	}
	d.tel.view.RUnlock()
	// The latest table holds what was compacted (before a restart, say);
	// stale readings are rare, so it is asked every time.
	var t int64
	err := tx.QueryRowContext(ctx, `SELECT t FROM latest WHERE series_id = ?`, series).Scan(&t)
	switch {
	case err == nil:
		if !ok || t > newest.t {
			newest, ok = latestRow{t: t}, true
		}
	case !errors.Is(err, sql.ErrNoRows):
		return 0, err
	}
	if ok && recv >= newest.t {
		return newest.t - 1, nil
	}
	return recv, nil
}
