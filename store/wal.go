package store

import (
	"context"
	"time"
)

// checkpointLoop first fsyncs the WAL when commits without their own
// fsync wait for it (lazysync.go), then copies the WAL back into the
// database file every interval with a PASSIVE checkpoint on its own
// connection, which never
// blocks the writer or readers. Under steady commits it cannot catch up
// by itself (new frames arrive while it copies), so the WAL is restarted
// by the writer's own checkpoints (wal_autocheckpoint, walGuard); this
// loop makes those cheap by copying most pages beforehand.
func (d *DB) checkpointLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.syncWAL(); err != nil {
				d.log.Warn("registration writes not synced; retrying", "err", err)
			}
			if _, err := d.ck.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`); err != nil && ctx.Err() == nil {
				d.log.Warn("checkpoint failed", "err", err)
			}
			d.CheckSpace()
		}
	}
}

// walBytes is the size of the WAL file (0 when there is none). The
// writer asks after every group commit (walGuard), so it reads the size
// alone (fileSize).
func (d *DB) walBytes() int64 {
	n, err := fileSize(d.cfg.Path + "-wal")
	if err != nil {
		return 0
	}
	return n
}

// walGuard runs on the writer between group commits. The WAL restarts
// only when no reader still uses a snapshot older than the last
// checkpoint; readers that keep overlapping can defer that for long.
// Once the file reaches walHardLimit the writer checkpoints with
// TRUNCATE, which waits (busy timeout) for those readers to finish and
// empties the file. If it still fails (a reader held its snapshot for the
// whole busy timeout), the next attempt waits for another walSizeLimit
// of growth, so a stuck reader cannot stall every commit.
func (d *DB) walGuard(ctx context.Context) {
	n := d.walBytes()
	if n < d.walNext {
		return
	}
	start := time.Now()
	if _, err := d.w.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		d.walNext = n + walSizeLimit
		d.log.Warn("WAL over its limit and not truncated; readers hold old snapshots", "bytes", n, "err", err)
		return
	}
	d.walNext = walHardLimit
	d.stats.walTruncates.Add(1)
	d.log.Info("WAL truncated after readers kept it from restarting", "bytes", n, "took", time.Since(start).Round(time.Millisecond))
}

// Checkpoint folds the WAL into the database file now and truncates it.
func (d *DB) Checkpoint(ctx context.Context) error {
	_, err := d.ck.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return wrap(err, "checkpoint")
}
