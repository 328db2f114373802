package store

import (
	"context"
	"database/sql"
	"math"
	"sort"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

const (
	// compactStepRows bounds the raw rows one compaction step reads. A
	// step costs mostly per series touched (a chunk, roll-up and latest
	// write each), so steps must cover many readings per series to keep
	// up with 10,000 devices; the write lock is held per series group
	// (compactSeriesPerTx), not per step.
	compactStepRows = 500000
	// chunkMergeMax: a new reading batch is merged into the bucket's last
	// chunk while the result stays this small; beyond it a new chunk (next
	// seq) starts, so rewrites stay cheap.
	chunkMergeMax = 1024
)

func floorDiv(t, span int64) int64 {
	q := t / span
	if t%span != 0 && t < 0 {
		q--
	}
	return q * span
}

type agg struct {
	min, max, sum float64
	count         int64
}

func (a *agg) add(f float64) {
	if a.count == 0 || f < a.min {
		a.min = f
	}
	if a.count == 0 || f > a.max {
		a.max = f
	}
	a.sum += f
	a.count++
}

type aggKey struct {
	series int64
	t      int64
}

type groupKey struct {
	series, bucket int64
}

// compactStep moves up to compactStepRows of the oldest raw readings into
// chunks and roll-ups and reports whether more are waiting. Errors are
// logged: the rows stay and the next step retries.
func (d *DB) compactStep(ctx context.Context, _ bool) bool {
	if d.rawRows.Load() <= 0 {
		return false
	}
	n, err := d.compact(ctx, compactStepRows)
	if err != nil {
		d.stats.compactErrors.Add(1)
		d.log.Error("compaction failed", "err", err)
		return false
	}
	return n == compactStepRows
}

// compactSeriesPerTx bounds one compaction transaction: the write lock is
// held for this many series' chunk, roll-up and latest writes, then the
// writer commits waiting readings before the next group.
const compactSeriesPerTx = 100

// compactScanPage bounds the raw rows compact reads at a time; the writer
// commits waiting readings between pages. Reading a whole step in one
// piece (200,000 rows when CompactRows set it off) took 250 ms in-process,
// 0.5–0.8 s with the appliance's load on the same core: every
// acknowledgement waited for it (issue 15, the ACK p99 of the
// 10,000-device fleet).
const compactScanPage = 16384

// scanRaw reads up to n raw readings (all for n < 0) after row id
// `after`, oldest first, and hands each to fn; it returns how many it read.
func (d *DB) scanRaw(ctx context.Context, after int64, n int, fn func(tailPoint, int64)) (int, error) {
	rows, err := d.w.QueryContext(ctx, `SELECT id, series_id, t, type, num, txt, blb FROM resource WHERE id > ? ORDER BY id LIMIT ?`, after, n)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	count := 0
	for rows.Next() {
		tp, s, err := scanResourceRow(rows)
		if err != nil {
			return 0, err
		}
		fn(tp, s)
		count++
	}
	return count, rows.Err()
}

// compact performs one compaction step of at most limit raw rows and
// returns how many it consumed. It reads the rows without holding the
// write lock, writes them series group by series group, each group's
// transaction also moving the series' watermark, and finally deletes the
// raw rows.
func (d *DB) compact(ctx context.Context, limit int) (int, error) {
	span := d.cfg.ChunkSpan.Milliseconds()
	bySeries := map[int64]map[int64][]point{} // series → bucket → points
	var maxRow int64
	count := 0
	for count < limit {
		n, err := d.scanRaw(ctx, maxRow, min(limit-count, compactScanPage), func(tp tailPoint, s int64) {
			maxRow = tp.row
			if tp.row <= d.tel.watermark(s) {
				return // packed before a crash, not yet deleted
			}
			m := bySeries[s]
			if m == nil {
				m = map[int64][]point{}
				bySeries[s] = m
			}
			k := floorDiv(tp.t, span)
			m[k] = append(m[k], tp.point)
		})
		if err != nil {
			return 0, err
		}
		count += n
		if n < compactScanPage {
			break
		}
		// Readings waiting for their commit go first (see compactScanPage).
		d.writeWaiting(ctx)
	}
	if count == 0 {
		d.rawRows.Store(0)
		return 0, nil
	}
	ids := make([]int64, 0, len(bySeries))
	for s := range bySeries {
		ids = append(ids, s)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for len(ids) > 0 {
		n := min(len(ids), compactSeriesPerTx)
		if err := d.compactGroup(ctx, ids[:n], bySeries, maxRow); err != nil {
			return 0, err
		}
		ids = ids[n:]
		d.writeWaiting(ctx)
	}
	if err := d.deleteCompacted(ctx, maxRow, count); err != nil {
		return 0, err
	}
	d.rawRows.Add(-int64(count))
	d.stats.compactions.Add(1)
	d.stats.compacted.Add(uint64(count))
	return count, nil
}

func (d *DB) noteCompactLock(began time.Time) {
	if el := int64(time.Since(began)); el > d.stats.maxCompact.Load() {
		d.stats.maxCompact.Store(el)
	}
}

// compactGroup packs the given series' points in one transaction.
func (d *DB) compactGroup(ctx context.Context, ids []int64, bySeries map[int64]map[int64][]point, maxRow int64) error {
	began := time.Now()
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	last, err := tx.PrepareContext(ctx, `SELECT id, seq, n, data FROM chunk WHERE series_id = ? AND bucket = ? ORDER BY seq DESC LIMIT 1`)
	if err != nil {
		return err
	}
	defer last.Close()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO chunk(series_id, bucket, seq, n, t_min, t_max, data) VALUES (?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	upd, err := tx.PrepareContext(ctx, `UPDATE chunk SET n = ?, t_min = ?, t_max = ?, data = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer upd.Close()
	mark, err := tx.PrepareContext(ctx, `UPDATE series SET compacted_row = ? WHERE id = ?`)
	if err != nil {
		return err
	}
	defer mark.Close()

	minutes := map[aggKey]*agg{}
	hours := map[aggKey]*agg{}
	groups := map[groupKey][]point{}
	touched := map[int64]bool{}
	for _, s := range ids {
		touched[s] = true
		for bucket, pts := range bySeries[s] {
			k := groupKey{s, bucket}
			groups[k] = pts
			sort.SliceStable(pts, func(i, j int) bool { return pts[i].t < pts[j].t })
			for _, p := range pts {
				if f, ok := p.v.Number(); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
					mk := aggKey{s, floorDiv(p.t, 60_000)}
					if minutes[mk] == nil {
						minutes[mk] = &agg{}
					}
					minutes[mk].add(f)
					hk := aggKey{s, floorDiv(p.t, 3_600_000)}
					if hours[hk] == nil {
						hours[hk] = &agg{}
					}
					hours[hk].add(f)
				}
			}
			// One chunk holds one data type: split into runs.
			for len(pts) > 0 {
				typ := pts[0].v.Type()
				j := 1
				for j < len(pts) && pts[j].v.Type() == typ {
					j++
				}
				if err := d.putChunk(ctx, last, ins, upd, k, typ, pts[:j]); err != nil {
					return err
				}
				pts = pts[j:]
			}
		}
		if _, err := mark.ExecContext(ctx, maxRow, s); err != nil {
			return err
		}
	}
	if err := upsertLatest(ctx, tx, groups); err != nil {
		return err
	}
	if err := upsertRollups(ctx, tx, "rollup_minute", minutes); err != nil {
		return err
	}
	if err := upsertRollups(ctx, tx, "rollup_hour", hours); err != nil {
		return err
	}
	d.tel.view.Lock()
	err = tx.Commit()
	if err == nil {
		d.tel.trimTailLocked(touched, maxRow)
		d.tel.setWatermarks(ids, maxRow)
	}
	d.tel.view.Unlock()
	d.noteCompactLock(began)
	return err
}

func (d *DB) putChunk(ctx context.Context, last, ins, upd *sql.Stmt, k groupKey, typ lwm2m.DataType, pts []point) error {
	var id, seq, n int64
	var data []byte
	err := last.QueryRowContext(ctx, k.series, k.bucket).Scan(&id, &seq, &n, &data)
	switch {
	case err == sql.ErrNoRows:
		seq = -1
	case err != nil:
		return err
	case n+int64(len(pts)) <= chunkMergeMax:
		old, otyp, derr := decodeChunk(nil, data)
		if derr == nil && otyp == typ {
			merged := append(old, pts...)
			sort.SliceStable(merged, func(i, j int) bool { return merged[i].t < merged[j].t })
			_, err := upd.ExecContext(ctx, len(merged), merged[0].t, merged[len(merged)-1].t, encodeChunk(typ, merged), id)
			return err
		}
	}
	_, err = ins.ExecContext(ctx, k.series, k.bucket, seq+1, len(pts), pts[0].t, pts[len(pts)-1].t, encodeChunk(typ, pts))
	return err
}

// upsertLatest writes the newest compacted reading of each series to the
// latest table (the in-memory copy serves queries until then).
func upsertLatest(ctx context.Context, tx *sql.Tx, groups map[groupKey][]point) error {
	newest := map[int64]point{}
	for k, pts := range groups {
		for _, p := range pts {
			if o, ok := newest[k.series]; !ok || p.t >= o.t {
				newest[k.series] = p
			}
		}
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO latest(series_id, t, type, num, txt, blb) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(series_id) DO UPDATE SET t = excluded.t, type = excluded.type, num = excluded.num, txt = excluded.txt, blb = excluded.blb
		WHERE excluded.t >= latest.t`)
	if err != nil {
		return err
	}
	defer st.Close()
	var args []any
	for s, p := range newest {
		if _, err := st.ExecContext(ctx, rowArgs(args[:0], s, p)...); err != nil {
			return err
		}
	}
	return nil
}

func upsertRollups(ctx context.Context, tx *sql.Tx, table string, m map[aggKey]*agg) error {
	if len(m) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO `+table+`(series_id, t, min, max, sum, count) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(series_id, t) DO UPDATE SET min = MIN(min, excluded.min), max = MAX(max, excluded.max),
		sum = sum + excluded.sum, count = count + excluded.count`)
	if err != nil {
		return err
	}
	defer st.Close()
	for k, a := range m {
		if _, err := st.ExecContext(ctx, k.series, k.t, a.min, a.max, a.sum, a.count); err != nil {
			return err
		}
	}
	return nil
}

// Compact packs every uncompacted reading into chunks and roll-ups now.
// Run does this on its own; tests and the backup path call it to get a
// settled database. It must not run concurrently with Run's writer, so
// it is meant for use while Run is not running.
func (d *DB) Compact(ctx context.Context) error {
	for {
		n, err := d.compact(ctx, compactStepRows)
		if err != nil {
			return wrap(err, "compact")
		}
		if n < compactStepRows {
			return nil
		}
	}
}
