package store

import (
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// Reading is one value of one resource (instance) at one time.
type Reading struct {
	Path  lwm2m.Path  `json:"path"`
	Time  time.Time   `json:"t"`
	Value lwm2m.Value `json:"v"`
}

// Point is one reading of a known series: {"t": RFC 3339, "v": value}.
type Point struct {
	T time.Time   `json:"t"`
	V lwm2m.Value `json:"v"`
}

// SeriesInfo describes one resource (instance) of one endpoint that has
// readings.
type SeriesInfo struct {
	ID   int64          `json:"id"`
	Path lwm2m.Path     `json:"path"`
	Type lwm2m.DataType `json:"type"`
}

// Series lists the resources of an endpoint that have readings, by path.
func (d *DB) Series(ctx context.Context, endpoint string) ([]SeriesInfo, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT s.id, s.path, s.type FROM series s JOIN endpoint e ON e.id = s.endpoint_id WHERE e.name = ?`, endpoint)
	if err != nil {
		return nil, wrap(err, "series of %q", endpoint)
	}
	defer rows.Close()
	var out []SeriesInfo
	for rows.Next() {
		var s SeriesInfo
		var p string
		var t int
		if err := rows.Scan(&s.ID, &p, &t); err != nil {
			return nil, wrap(err, "series of %q", endpoint)
		}
		s.Path, _ = lwm2m.ParsePath(p)
		s.Type = lwm2m.DataType(t)
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path.Compare(out[j].Path) < 0 })
	return out, wrap(rows.Err(), "series of %q", endpoint)
}

// Latest returns the newest reading of every resource of an endpoint,
// ordered by path. An endpoint without readings gives an empty list; an
// unknown one ErrNotFound.
func (d *DB) Latest(ctx context.Context, endpoint string) ([]Reading, error) {
	var ep int64
	if err := d.r.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, endpoint).Scan(&ep); err != nil {
		return nil, wrap(err, "latest of %q", endpoint)
	}
	// Newest readings not yet compacted are in memory; the table has
	// the rest. The newer of the two wins.
	rows, err := d.r.QueryContext(ctx, `SELECT s.id, s.path, l.t, l.type, l.num, l.txt, l.blb FROM series s LEFT JOIN latest l ON l.series_id = s.id
		WHERE s.endpoint_id = ?`, ep)
	if err != nil {
		return nil, wrap(err, "latest of %q", endpoint)
	}
	defer rows.Close()
	out := []Reading{}
	for rows.Next() {
		var sid int64
		var p string
		var t *int64
		var typ *int
		var num *int64
		var txt *string
		var blb []byte
		if err := rows.Scan(&sid, &p, &t, &typ, &num, &txt, &blb); err != nil {
			return nil, wrap(err, "latest of %q", endpoint)
		}
		path, err := lwm2m.ParsePath(p)
		if err != nil {
			continue
		}
		var r Reading
		have := false
		if t != nil && typ != nil {
			var n uint64
			if num != nil {
				n = uint64(*num)
			}
			var s string
			if txt != nil {
				s = *txt
			}
			r, have = Reading{Path: path, Time: fromMS(*t), Value: valueFrom(lwm2m.DataType(*typ), n, s, blb)}, true
		}
		d.tel.view.RLock()
		m, ok := d.tel.latest[sid]
		d.tel.view.RUnlock()
		if ok && (!have || m.t >= r.Time.UnixMilli()) {
			r, have = Reading{Path: path, Time: fromMS(m.t), Value: m.v}, true
		}
		if have {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path.Compare(out[j].Path) < 0 })
	return out, wrap(rows.Err(), "latest of %q", endpoint)
}

// seriesID finds the series of an endpoint's path.
func (d *DB) seriesID(ctx context.Context, endpoint string, path lwm2m.Path) (SeriesInfo, error) {
	var s SeriesInfo
	var t int
	err := d.r.QueryRowContext(ctx, `SELECT s.id, s.type FROM series s JOIN endpoint e ON e.id = s.endpoint_id WHERE e.name = ? AND s.path = ?`,
		endpoint, path.String()).Scan(&s.ID, &t)
	s.Path, s.Type = path, lwm2m.DataType(t)
	return s, wrap(err, "series %q %s", endpoint, path)
}

// snapshot opens a read transaction whose snapshot matches a copy of the
// in-memory tail of series s within [from, to]: the snapshot is pinned
// while no compaction or ingestion commit can run (view.RLock), so the
// chunks read later and the tail copy neither overlap nor leave a gap.
func (d *DB) snapshot(ctx context.Context, s, from, to int64) (*sql.Tx, []point, error) {
	tx, err := d.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	d.tel.view.RLock()
	var one int
	err = tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM chunk LIMIT 1)`).Scan(&one)
	var tail []point
	if err == nil {
		tail = d.tel.tailRangeLocked(nil, s, from, to)
	}
	d.tel.view.RUnlock()
	if err != nil {
		tx.Rollback()
		return nil, nil, err
	}
	return tx, tail, nil
}

// rawRange returns the readings of series s within [from, to] (ms), in
// time order: chunks overlapping the range plus the tail.
func (d *DB) rawRange(ctx context.Context, s, from, to int64) ([]point, error) {
	tx, tail, err := d.snapshot(ctx, s, from, to)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	span := d.cfg.ChunkSpan.Milliseconds()
	rows, err := tx.QueryContext(ctx, `SELECT data FROM chunk WHERE series_id = ? AND bucket >= ? AND bucket <= ? AND t_max >= ? AND t_min <= ?
		ORDER BY bucket, seq`, s, floorDiv(from, span), to, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out, buf []point
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		buf, _, err = decodeChunk(buf[:0], data)
		if err != nil {
			return nil, fmt.Errorf("series %d: %w", s, err)
		}
		for _, p := range buf {
			if p.t >= from && p.t <= to {
				out = append(out, p)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out = append(out, tail...)
	// Chunks come in time order and are sorted inside; only a tail with
	// late readings or overlapping chunks need sorting.
	if !sort.SliceIsSorted(out, func(i, j int) bool { return out[i].t < out[j].t }) {
		sort.SliceStable(out, func(i, j int) bool { return out[i].t < out[j].t })
	}
	return out, nil
}

// rawNumbers is rawRange for charts: the numeric readings of series s
// within [from, to] as floats, in time order, NaN and infinities left out.
func (d *DB) rawNumbers(ctx context.Context, s, from, to int64) ([]numPoint, error) {
	tx, tail, err := d.snapshot(ctx, s, from, to)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	span := d.cfg.ChunkSpan.Milliseconds()
	rows, err := tx.QueryContext(ctx, `SELECT data FROM chunk WHERE series_id = ? AND bucket >= ? AND bucket <= ? AND t_max >= ? AND t_min <= ?
		ORDER BY bucket, seq`, s, floorDiv(from, span), to, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []numPoint
	var data []byte
	for rows.Next() {
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		n := len(out)
		out, err = decodeChunkNumbers(out, data)
		if err != nil {
			return nil, fmt.Errorf("series %d: %w", s, err)
		}
		// Keep what lies in range and is finite, in place.
		k := n
		for _, p := range out[n:] {
			if p.t >= from && p.t <= to && !math.IsNaN(p.f) && !math.IsInf(p.f, 0) {
				out[k] = p
				k++
			}
		}
		out = out[:k]
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, p := range tail {
		if f, ok := p.v.Number(); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
			out = append(out, numPoint{p.t, f})
		}
	}
	if !sort.SliceIsSorted(out, func(i, j int) bool { return out[i].t < out[j].t }) {
		sort.SliceStable(out, func(i, j int) bool { return out[i].t < out[j].t })
	}
	return out, nil
}

// Readings returns the raw readings of one resource of an endpoint within
// [from, to], oldest first, at most limit (0: 10,000) — the newest ones
// when there are more.
func (d *DB) Readings(ctx context.Context, endpoint string, path lwm2m.Path, from, to time.Time, limit int) ([]Point, error) {
	if limit <= 0 {
		limit = 10000
	}
	if to.Before(from) {
		return nil, fmt.Errorf("store: readings: %w: range ends before it starts", ErrInvalid)
	}
	s, err := d.seriesID(ctx, endpoint, path)
	if err != nil {
		return nil, err
	}
	pts, err := d.rawRange(ctx, s.ID, from.UnixMilli(), to.UnixMilli())
	if err != nil {
		return nil, wrap(err, "readings %q %s", endpoint, path)
	}
	if len(pts) > limit {
		pts = pts[len(pts)-limit:]
	}
	out := make([]Point, len(pts))
	for i, p := range pts {
		out[i] = Point{T: fromMS(p.t), V: p.v}
	}
	return out, nil
}

// Chart sources.
const (
	SourceAuto   = ""
	SourceRaw    = "raw"
	SourceMinute = "minute"
	SourceHour   = "hour"
)

// ChartQuery asks for a numeric time series downsampled for a chart.
type ChartQuery struct {
	Endpoint  string
	Path      lwm2m.Path
	From, To  time.Time
	MaxPoints int // default and cap 1000
	// Source forces raw readings or a roll-up; by default it is picked
	// from the bucket width and what retention still holds.
	Source string
}

// ChartPoint is one bucket of a chart (or one reading when the range
// holds fewer readings than MaxPoints).
type ChartPoint struct {
	T     time.Time `json:"t"`
	Mean  float64   `json:"v"`
	Min   float64   `json:"min"`
	Max   float64   `json:"max"`
	Count int64     `json:"n"`
}

// Chart is a downsampled series.
type Chart struct {
	Source string       `json:"source"`
	Points []ChartPoint `json:"points"`
}

type bucketer struct {
	from, width int64
	b           []agg
	// first is the earliest reading time seen in each bucket: a point is
	// stamped there when that is later than the bucket start, so a chart
	// never shows data before it existed.
	first []int64
}

func newBucketer(from, to int64, n int, minWidth int64) *bucketer {
	w := (to - from + int64(n)) / int64(n)
	if w < minWidth {
		w = minWidth
	}
	n = int((to-from)/w) + 1
	return &bucketer{from: from, width: w, b: make([]agg, n), first: make([]int64, n)}
}

func (b *bucketer) addAgg(t int64, a agg) {
	i := (t - b.from) / b.width
	if t < b.from || i >= int64(len(b.b)) || a.count == 0 {
		return
	}
	x := &b.b[i]
	if x.count == 0 || t < b.first[i] {
		b.first[i] = t
	}
	if x.count == 0 || a.min < x.min {
		x.min = a.min
	}
	if x.count == 0 || a.max > x.max {
		x.max = a.max
	}
	x.sum += a.sum
	x.count += a.count
}

func (b *bucketer) points() []ChartPoint {
	out := []ChartPoint{}
	for i, a := range b.b {
		if a.count > 0 {
			out = append(out, ChartPoint{T: fromMS(max(b.from+int64(i)*b.width, b.first[i])), Mean: a.sum / float64(a.count), Min: a.min, Max: a.max, Count: a.count})
		}
	}
	return out
}

// rawChartMax is the most raw readings a chart decodes before it
// prefers roll-ups.
const rawChartMax = 50000

// rawCount estimates the readings of series s in [from, to] from the
// chunk headers (whole overlapping chunks) and the tail.
func (d *DB) rawCount(ctx context.Context, s, from, to int64) int64 {
	span := d.cfg.ChunkSpan.Milliseconds()
	var n int64
	if err := d.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(n), 0) FROM chunk WHERE series_id = ? AND bucket >= ? AND bucket <= ?`,
		s, floorDiv(from, span), to).Scan(&n); err != nil {
		return math.MaxInt64
	}
	d.tel.view.RLock()
	for _, p := range d.tel.tail[s] {
		if p.t >= from && p.t <= to {
			n++
		}
	}
	d.tel.view.RUnlock()
	return n
}

// Chart returns a numeric series within [From, To] in at most MaxPoints
// points: raw readings when they fit, otherwise buckets (mean, min, max,
// count) from raw readings, minute roll-ups or hour roll-ups — whichever
// is the coarsest that still resolves a bucket, and still held.
func (d *DB) Chart(ctx context.Context, q ChartQuery) (Chart, error) {
	if q.MaxPoints <= 0 || q.MaxPoints > 1000 {
		q.MaxPoints = 1000
	}
	if !q.To.After(q.From) {
		return Chart{}, fmt.Errorf("store: chart: %w: range must end after it starts", ErrInvalid)
	}
	s, err := d.seriesID(ctx, q.Endpoint, q.Path)
	if err != nil {
		return Chart{}, err
	}
	from, to := q.From.UnixMilli(), q.To.UnixMilli()
	width := (to - from) / int64(q.MaxPoints)
	now := d.now().UnixMilli()
	src := q.Source
	if src == SourceAuto {
		raw := d.rawRetention()
		if o, ok := d.overrides[[2]uint16{q.Path.ObjectID(), q.Path.ResourceID()}]; ok {
			raw = o
		}
		inRaw := from >= now-raw.Milliseconds()
		switch {
		case inRaw && width < 60_000:
			src = SourceRaw
		case inRaw && d.rawCount(ctx, s.ID, from, to) <= rawChartMax:
			// Few readings: raw is exact and as cheap as a roll-up.
			src = SourceRaw
		case width < 3_600_000 && from >= now-d.cfg.MinuteRollupRetention.Milliseconds():
			src = SourceMinute
		default:
			src = SourceHour
		}
	}
	switch src {
	case SourceRaw:
		nums, err := d.rawNumbers(ctx, s.ID, from, to)
		if err != nil {
			return Chart{}, wrap(err, "chart %q %s", q.Endpoint, q.Path)
		}
		if len(nums) <= q.MaxPoints {
			out := make([]ChartPoint, len(nums))
			for i, p := range nums {
				out[i] = ChartPoint{T: fromMS(p.t), Mean: p.f, Min: p.f, Max: p.f, Count: 1}
			}
			return Chart{Source: src, Points: out}, nil
		}
		b := newBucketer(from, to, q.MaxPoints, 1)
		for _, p := range nums {
			b.addAgg(p.t, agg{min: p.f, max: p.f, sum: p.f, count: 1})
		}
		return Chart{Source: src, Points: b.points()}, nil
	case SourceMinute, SourceHour:
		table, unit := "rollup_minute", int64(60_000)
		if src == SourceHour {
			table, unit = "rollup_hour", 3_600_000
		}
		tx, tail, err := d.snapshot(ctx, s.ID, from, to)
		if err != nil {
			return Chart{}, wrap(err, "chart %q %s", q.Endpoint, q.Path)
		}
		defer tx.Rollback()
		rows, err := tx.QueryContext(ctx, `SELECT t, min, max, sum, count FROM `+table+` WHERE series_id = ? AND t >= ? AND t <= ? ORDER BY t`,
			s.ID, floorDiv(from, unit), to)
		if err != nil {
			return Chart{}, wrap(err, "chart %q %s", q.Endpoint, q.Path)
		}
		defer rows.Close()
		b := newBucketer(floorDiv(from, unit), to, q.MaxPoints, unit)
		for rows.Next() {
			var t int64
			var a agg
			if err := rows.Scan(&t, &a.min, &a.max, &a.sum, &a.count); err != nil {
				return Chart{}, wrap(err, "chart %q %s", q.Endpoint, q.Path)
			}
			b.addAgg(t, a)
		}
		if err := rows.Err(); err != nil {
			return Chart{}, wrap(err, "chart %q %s", q.Endpoint, q.Path)
		}
		for _, p := range tail {
			if f, ok := p.v.Number(); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
				b.addAgg(floorDiv(p.t, unit), agg{min: f, max: f, sum: f, count: 1})
			}
		}
		return Chart{Source: src, Points: b.points()}, nil
	}
	return Chart{}, fmt.Errorf("store: chart: %w: unknown source %q", ErrInvalid, q.Source)
}

// ExportQuery selects readings for CSV export.
type ExportQuery struct {
	Endpoint string
	// Paths limits the export to these resources; empty means all.
	Paths    []lwm2m.Path
	From, To time.Time
}

// CSVTime is the export's time format: ISO 8601, UTC, milliseconds.
const CSVTime = "2006-01-02T15:04:05.000Z"

// ExportCSV streams an endpoint's readings as RFC 4180 CSV (CRLF line
// ends, quoted where needed) with the header endpoint,path,time,type,value,
// one series after the other, each oldest first. It reads one day of a
// series at a time, so memory stays bounded and no lock is held long.
func (d *DB) ExportCSV(ctx context.Context, w io.Writer, q ExportQuery) error {
	if q.To.Before(q.From) {
		return fmt.Errorf("store: export: %w: range ends before it starts", ErrInvalid)
	}
	all, err := d.Series(ctx, q.Endpoint)
	if err != nil {
		return err
	}
	if len(all) == 0 {
		if _, err := d.Endpoint(ctx, q.Endpoint); err != nil {
			return err
		}
	}
	want := map[lwm2m.Path]bool{}
	for _, p := range q.Paths {
		want[p] = true
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write([]string{"endpoint", "path", "time", "type", "value"}); err != nil {
		return fmt.Errorf("store: export: %w", err)
	}
	const step = 24 * 3600 * 1000
	from, to := q.From.UnixMilli(), q.To.UnixMilli()
	rec := make([]string, 5)
	for _, s := range all {
		if len(want) > 0 && !want[s.Path] {
			continue
		}
		for lo := from; lo <= to; lo += step {
			hi := min(lo+step-1, to)
			pts, err := d.rawRange(ctx, s.ID, lo, hi)
			if err != nil {
				return wrap(err, "export %q %s", q.Endpoint, s.Path)
			}
			for _, p := range pts {
				rec[0], rec[1] = q.Endpoint, s.Path.String()
				rec[2] = time.UnixMilli(p.t).UTC().Format(CSVTime)
				rec[3] = p.v.Type().String()
				rec[4] = p.v.Text()
				if err := cw.Write(rec); err != nil {
					return fmt.Errorf("store: export: %w", err)
				}
			}
			cw.Flush()
			if err := cw.Error(); err != nil {
				return fmt.Errorf("store: export: %w", err)
			}
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("store: export: %w", err)
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

var _ = strconv.Itoa
