package store

import (
	"context"
	"time"
)

// Commit pacing (issue 15). Under synchronous=FULL every commit of
// acknowledged readings ends with an fsync of the WAL, and on the
// reference VM that fsync alone costs about 90 µs of CPU, more than
// everything else a notification costs. The group commit shares it among
// the readings that arrived while the previous commit ran, but a fast
// commit leaves little time to gather: at 10,000 notifications a second
// a commit carried two or three of them, and a stored notification cost
// 72.5 µs (the sixth run of docs/PERFORMANCE.md).
//
// So a commit that will fsync waits, when the previous fsynced commit
// ended less than CommitGap ago, for the rest of that gap, gathering what
// arrives meanwhile. Under light load the last fsync is long past and
// nothing waits; under heavy load commits come at most every CommitGap
// and each carries what arrived in it. The wait ends early once a quarter
// of the gap passes with nothing arriving: a few devices that all wait
// for their acknowledgement send nothing more, and waiting for them would
// only add latency. The cost is at most CommitGap of latency on an
// acknowledgement, against a CoAP ACK_TIMEOUT of 2 s (RFC 7252 §4.8). A
// queue that already holds MaxBatchRecords readings, a stop and a Flush
// do not wait.

// pace holds the writer before a commit of first (an acknowledged batch
// it took from the queue) until CommitGap has passed since the last
// fsynced commit, nothing arrived for a quarter of it, the queue holds a
// full transaction, or ctx ends.
func (d *DB) pace(ctx context.Context, first *batch) {
	gap := d.cfg.CommitGap
	if gap <= 0 || first.then == nil || first.done != nil || !d.syncsEveryCommit() || d.lastSync.IsZero() {
		return
	}
	end := d.lastSync.Add(gap)
	if !time.Now().Before(end) {
		return
	}
	select {
	case <-d.paceWake: // a wake-up meant for an earlier wait
	default:
	}
	d.pacing.Store(true)
	defer d.pacing.Store(false)
	if d.batchFull() {
		return
	}
	d.stats.paced.Add(1)
	quiet := gap / 4
	t := time.NewTimer(min(quiet, time.Until(end)))
	defer t.Stop()
	for {
		seen := d.stats.accepted.Load()
		select {
		case <-t.C:
		case <-d.paceWake:
			return
		case <-ctx.Done():
			return
		case <-d.closing:
			return
		}
		left := time.Until(end)
		if left <= 0 || d.stats.accepted.Load() == seen {
			return
		}
		t.Reset(min(quiet, left))
	}
}

// batchFull reports whether the queue holds a transaction's worth of
// readings.
func (d *DB) batchFull() bool {
	return d.queuedRecords.Load() >= int64(d.cfg.MaxBatchRecords)
}

// wakePacing ends a wait of pace once the queue holds a full transaction;
// enqueue calls it after adding a batch.
func (d *DB) wakePacing() {
	if d.pacing.Load() && d.batchFull() {
		select {
		case d.paceWake <- struct{}{}:
		default:
		}
	}
}

// synced notes the end of a commit that fsynced the WAL.
func (d *DB) synced() { d.lastSync = time.Now() }
