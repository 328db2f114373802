package store

import (
	"context"
	"time"
)

// LogRetentionResult says what one log retention pass removed.
type LogRetentionResult struct {
	Aged  int64 // lines past the retention by age
	Sized int64 // oldest lines removed to get under the size cap
}

// logSizeBatch bounds each size-retention delete: a short write lock.
const logSizeBatch = 500

// ApplyLogRetention removes device log lines received longer ago than the
// log retention, then the oldest lines while the logs exceed their size
// cap. RunLogs calls it every LogConfig.RetentionInterval; the size part
// also runs after every commit.
func (d *DB) ApplyLogRetention(ctx context.Context) (LogRetentionResult, error) {
	var r LogRetentionResult
	cut := d.now().Add(-time.Duration(d.logs.retention.Load())).UnixMilli()
	for {
		res, err := d.w.ExecContext(ctx, `DELETE FROM device_log WHERE id IN (SELECT id FROM device_log WHERE received < ? LIMIT ?)`, cut, retentionBatch)
		if err != nil {
			return r, wrap(err, "log retention")
		}
		n, _ := res.RowsAffected()
		r.Aged += n
		d.logs.deleted.Add(uint64(n))
		if n < retentionBatch {
			break
		}
	}
	n, err := d.logSizeRetention(ctx)
	r.Sized = n
	if err != nil {
		return r, err
	}
	if r.Aged+r.Sized > 0 {
		if _, err := d.w.ExecContext(ctx, `PRAGMA incremental_vacuum(500)`); err != nil {
			return r, wrap(err, "incremental vacuum")
		}
	}
	return r, nil
}

// logSizeRetention deletes the oldest lines (by reception order) while the
// logs' bytes exceed the cap, down to nine tenths of it so that the next
// commits do not each pay for a delete.
func (d *DB) logSizeRetention(ctx context.Context) (int64, error) {
	limit := d.logs.maxBytes.Load()
	if limit <= 0 {
		return 0, nil
	}
	var total int64
	target := limit - limit/10
	for i := 0; i < 100000; i++ {
		var bytes int64
		if err := d.w.QueryRowContext(ctx, `SELECT bytes FROM device_log_size WHERE id = 1`).Scan(&bytes); err != nil {
			return total, wrap(err, "log size retention")
		}
		if bytes <= limit && (total == 0 || bytes <= target) {
			return total, nil
		}
		res, err := d.w.ExecContext(ctx, `DELETE FROM device_log WHERE id IN (SELECT id FROM device_log ORDER BY id LIMIT ?)`, logSizeBatch)
		if err != nil {
			return total, wrap(err, "log size retention")
		}
		n, _ := res.RowsAffected()
		total += n
		d.logs.deleted.Add(uint64(n))
		if n == 0 {
			// Nothing left to delete: the count drifted; start it over.
			_, err := d.w.ExecContext(ctx, `UPDATE device_log_size SET lines = 0, bytes = 0 WHERE id = 1`)
			return total, wrap(err, "log size retention")
		}
	}
	return total, nil
}
