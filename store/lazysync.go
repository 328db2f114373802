package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"time"
)

// Registration state is written at once and fsynced within walSyncEvery
// (issue 15). A Register, the observations the appliance then starts, and
// the registration times it moves are answered only after their commit,
// as before, so a killed process loses none of them: a commit is in the
// WAL file, in the kernel's page cache, before the device hears back. But
// when the transaction holds nothing else (readings nobody was told are
// stored, such as registration events, may join it), it commits under
// synchronous=NORMAL, without the fsync that FULL adds to every commit
// (about 170 µs of CPU on the reference VM, more than the rest of a
// Register), and the checkpoint loop fsyncs the WAL within walSyncEvery
// unless a FULL commit, which syncs every frame before its own, came
// first. Compaction's deletes of raw rows it packed commit the same way
// (watermark.go: rows a lost delete leaves are skipped as packed and
// deleted again). The WAL is
// written in commit order, so a power cut loses at most the registration
// writes (and such deletes) of that last interval, never an earlier one,
// and never anything else: readings a device is acknowledged for (IngestThen), Flush,
// operations, users, credentials and firmware commit under FULL. A device
// whose Register was lost gets 4.04 at its next Update and registers again
// (LwM2M Core §6.2.2), as it would after any server restart without saved
// registrations.

// walSyncEvery is the longest a registration write waits for its fsync.
const walSyncEvery = 250 * time.Millisecond

// lazyKey marks contexts of registration-state writes.
type lazyKey struct{}

// registrationWrite marks ctx's write as registration state: committed
// before it returns, fsynced within walSyncEvery.
func registrationWrite(ctx context.Context) context.Context {
	return context.WithValue(ctx, lazyKey{}, true)
}

func isRegistrationWrite(ctx context.Context) bool { return ctx.Value(lazyKey{}) != nil }

// lazyTx reports whether a transaction of bs and jobs may skip its fsync:
// it holds only registration writes and readings nobody was told are
// stored (Ingest: registration events, values read or sent without an
// acknowledgement, which a crash before their commit loses anyway), and
// the database syncs at every commit otherwise.
func (d *DB) lazyTx(bs []*batch, jobs []*writeJob) bool {
	if !d.syncsEveryCommit() {
		return false
	}
	for _, j := range jobs {
		if !j.lazy {
			return false
		}
	}
	for _, b := range bs {
		if b.then != nil || b.done != nil {
			return false
		}
	}
	return true
}

// syncsEveryCommit reports whether the database fsyncs at every commit
// (Config.Synchronous FULL), so that a commit may skip it (lazy).
func (d *DB) syncsEveryCommit() bool { return d.cfg.Synchronous == SyncFull }

// beginWrite starts the writer's transaction; a lazy one runs under
// synchronous=NORMAL on the writer's connection, held until end so that
// no other write runs under that setting. end must follow the commit or
// rollback.
func (d *DB) beginWrite(ctx context.Context, lazy bool) (tx *sql.Tx, end func(), err error) {
	if !lazy {
		tx, err = d.w.BeginTx(ctx, nil)
		return tx, func() {}, err
	}
	c, err := d.w.Conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	end = func() {
		if _, err := c.ExecContext(ctx, `PRAGMA synchronous=FULL`); err != nil {
			// Never leave the connection syncing less: drop it, and the
			// pool opens a new one with the configured setting.
			d.log.Warn("writer connection dropped: synchronous not restored", "err", err)
			c.Raw(func(any) error { return driver.ErrBadConn })
		}
		c.Close()
	}
	if _, err := c.ExecContext(ctx, `PRAGMA synchronous=NORMAL`); err != nil {
		end()
		return nil, nil, err
	}
	if tx, err = c.BeginTx(ctx, nil); err != nil {
		end()
		return nil, nil, err
	}
	return tx, end, nil
}

// committed notes a commit of the writer's: a lazy one leaves the WAL to
// sync, a FULL one synced it.
func (d *DB) committed(lazy bool) {
	if lazy {
		d.stats.lazyCommits.Add(1)
	}
	d.walUnsynced.Store(lazy)
}

// syncWAL fsyncs the WAL when lazy commits are not yet durable. The
// checkpoint loop runs it every walSyncEvery, and the writer at its stop.
// The mark is cleared before the fsync, so a lazy commit that lands
// meanwhile is either covered by it or marks the WAL again.
func (d *DB) syncWAL() error {
	if !d.walUnsynced.Swap(false) {
		return nil
	}
	f, err := os.OpenFile(d.cfg.Path+"-wal", os.O_RDWR, 0)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		d.walUnsynced.Store(true) // the next tick tries again
		return fmt.Errorf("store: sync the WAL: %w", err)
	}
	d.stats.walSyncs.Add(1)
	return nil
}
