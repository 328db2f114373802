package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// retentionBatch bounds each delete so no write lock is held long.
const retentionBatch = 2000

// sizeBatch is smaller: the size check runs between batches, and each
// chunk may free several pages.
const sizeBatch = 64

// parseOverrides reads RetentionOverrides keys "object/resource".
func parseOverrides(m map[string]time.Duration) (map[[2]uint16]time.Duration, error) {
	out := map[[2]uint16]time.Duration{}
	for k, v := range m {
		a, b, ok := strings.Cut(strings.Trim(k, "/"), "/")
		o, err1 := strconv.ParseUint(a, 10, 16)
		r, err2 := strconv.ParseUint(b, 10, 16)
		if !ok || err1 != nil || err2 != nil || v <= 0 {
			return nil, fmt.Errorf("store: retention override %q=%v: %w: want \"object/resource\" and a positive duration", k, v, ErrInvalid)
		}
		out[[2]uint16{uint16(o), uint16(r)}] = v
	}
	return out, nil
}

// RetentionResult says what one retention pass removed.
type RetentionResult struct {
	Chunks, MinuteRollups, HourRollups, Events, Logs, Sessions int64
	// Audit entries older than AuditRetention; Refusals of names not
	// refused again within the raw retention (or beyond the newest 1000).
	Audit, Refusals int64
	// SizeChunks are chunks removed to get under MaxSizeBytes.
	SizeChunks int64
}

// retentionPass runs one pass from the writer loop, logging errors.
func (d *DB) retentionPass(ctx context.Context) {
	res, err := d.ApplyRetention(ctx)
	if err != nil {
		d.log.Error("retention failed", "err", err)
		return
	}
	if res != (RetentionResult{}) {
		d.log.Debug("retention", "chunks", res.Chunks, "size_chunks", res.SizeChunks, "events", res.Events, "logs", res.Logs)
	}
}

// deleteBatched runs a "DELETE … WHERE id IN (SELECT … LIMIT ?)" style
// statement until it deletes nothing, one short transaction per batch,
// committing waiting readings between batches.
func (d *DB) deleteBatched(ctx context.Context, q string, args ...any) (int64, error) {
	var total int64
	for {
		res, err := d.w.ExecContext(ctx, q, append(args, retentionBatch)...)
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
		d.stats.retentionDeleted.Add(uint64(n))
		if n < retentionBatch {
			return total, nil
		}
		d.writeWaiting(ctx)
	}
}

// ApplyRetention removes what is older than its retention (raw chunks by
// age with the per-resource-type overrides, roll-ups, events, device
// logs, expired sessions) and then the oldest chunks while the database
// is above MaxSizeBytes. Run calls it every RetentionInterval.
func (d *DB) ApplyRetention(ctx context.Context) (RetentionResult, error) {
	var r RetentionResult
	now := d.now().UnixMilli()
	span := d.cfg.ChunkSpan.Milliseconds()
	// A chunk goes when its whole bucket is older than the cutoff.
	var excl []string
	var exclArgs []any
	for k, ret := range d.overrides {
		n, err := d.deleteBatched(ctx, `DELETE FROM chunk WHERE id IN (SELECT c.id FROM chunk c JOIN series s ON s.id = c.series_id
			WHERE c.bucket + ? <= ? AND s.object_id = ? AND s.resource_id = ? LIMIT ?)`, span, now-ret.Milliseconds(), k[0], k[1])
		if err != nil {
			return r, wrap(err, "retention")
		}
		r.Chunks += n
		excl = append(excl, `(s.object_id = ? AND s.resource_id = ?)`)
		exclArgs = append(exclArgs, k[0], k[1])
	}
	q := `DELETE FROM chunk WHERE id IN (SELECT c.id FROM chunk c WHERE c.bucket + ? <= ? LIMIT ?)`
	args := []any{span, now - d.rawRetention().Milliseconds()}
	if len(excl) > 0 {
		q = `DELETE FROM chunk WHERE id IN (SELECT c.id FROM chunk c JOIN series s ON s.id = c.series_id
			WHERE c.bucket + ? <= ? AND NOT (` + strings.Join(excl, " OR ") + `) LIMIT ?)`
		args = append(args, exclArgs...)
	}
	n, err := d.deleteBatched(ctx, q, args...)
	if err != nil {
		return r, wrap(err, "retention")
	}
	r.Chunks += n
	if r.MinuteRollups, err = d.deleteBatched(ctx, `DELETE FROM rollup_minute WHERE (series_id, t) IN
		(SELECT series_id, t FROM rollup_minute WHERE t + 60000 <= ? LIMIT ?)`, now-d.cfg.MinuteRollupRetention.Milliseconds()); err != nil {
		return r, wrap(err, "retention")
	}
	if r.HourRollups, err = d.deleteBatched(ctx, `DELETE FROM rollup_hour WHERE (series_id, t) IN
		(SELECT series_id, t FROM rollup_hour WHERE t + 3600000 <= ? LIMIT ?)`, now-d.cfg.HourRollupRetention.Milliseconds()); err != nil {
		return r, wrap(err, "retention")
	}
	cut := now - d.rawRetention().Milliseconds()
	if r.Events, err = d.deleteBatched(ctx, `DELETE FROM event WHERE id IN (SELECT id FROM event WHERE t < ? LIMIT ?)`, cut); err != nil {
		return r, wrap(err, "retention")
	}
	// Device logs keep their own age (SetLogRetention); RunLogs applies it
	// too, and their size cap.
	logCut := now - time.Duration(d.logs.retention.Load()).Milliseconds()
	if r.Logs, err = d.deleteBatched(ctx, `DELETE FROM device_log WHERE id IN (SELECT id FROM device_log WHERE received < ? LIMIT ?)`, logCut); err != nil {
		return r, wrap(err, "retention")
	}
	if r.Sessions, err = d.deleteBatched(ctx, `DELETE FROM session WHERE id_hash IN (SELECT id_hash FROM session WHERE expires <= ? LIMIT ?)`, now); err != nil {
		return r, wrap(err, "retention")
	}
	if r.Audit, err = d.deleteBatched(ctx, `DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE t < ? LIMIT ?)`, now-d.cfg.AuditRetention.Milliseconds()); err != nil {
		return r, wrap(err, "retention")
	}
	if r.Refusals, err = d.trimRefusals(ctx, cut); err != nil {
		return r, err
	}
	if d.cfg.MaxSizeBytes > 0 {
		for i := 0; i < 10000; i++ {
			used, err := d.UsedBytes(ctx)
			if err != nil {
				return r, err
			}
			if used <= d.cfg.MaxSizeBytes {
				break
			}
			res, err := d.w.ExecContext(ctx, `DELETE FROM chunk WHERE id IN (SELECT id FROM chunk ORDER BY bucket LIMIT ?)`, sizeBatch)
			if err != nil {
				return r, wrap(err, "size retention")
			}
			n, _ := res.RowsAffected()
			r.SizeChunks += n
			d.stats.retentionDeleted.Add(uint64(n))
			if n == 0 {
				// Nothing left to trade: roll-ups go oldest first too.
				res, err := d.w.ExecContext(ctx, `DELETE FROM rollup_minute WHERE (series_id, t) IN (SELECT series_id, t FROM rollup_minute ORDER BY t LIMIT ?)`, retentionBatch)
				if err != nil {
					return r, wrap(err, "size retention")
				}
				if m, _ := res.RowsAffected(); m == 0 {
					break
				}
			}
			d.writeWaiting(ctx)
		}
	}
	if r != (RetentionResult{}) {
		// Give freed pages back to the file system a little at a time.
		if _, err := d.w.ExecContext(ctx, `PRAGMA incremental_vacuum(2000)`); err != nil {
			return r, wrap(err, "incremental vacuum")
		}
	}
	return r, nil
}

// UsedBytes is the database's size less its free pages: what the size cap
// measures.
func (d *DB) UsedBytes(ctx context.Context) (int64, error) {
	var pages, free, size int64
	if err := d.w.QueryRowContext(ctx, `PRAGMA page_count`).Scan(&pages); err != nil {
		return 0, wrap(err, "page count")
	}
	if err := d.w.QueryRowContext(ctx, `PRAGMA freelist_count`).Scan(&free); err != nil {
		return 0, wrap(err, "freelist count")
	}
	if err := d.w.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&size); err != nil {
		return 0, wrap(err, "page size")
	}
	return (pages - free) * size, nil
}

// SetRetention changes how long raw readings, events and device logs are
// kept (Config.Retention); the next retention pass applies it. Per-type
// overrides stay as configured.
func (d *DB) SetRetention(r time.Duration) {
	if r > 0 {
		d.retention.Store(int64(r))
	}
}

// Retention is the retention of raw readings in force.
func (d *DB) Retention() time.Duration { return d.rawRetention() }

func (d *DB) rawRetention() time.Duration { return time.Duration(d.retention.Load()) }
