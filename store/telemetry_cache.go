package store

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"github.com/flownexus/flownexus/lwm2m"
)

type seriesKey struct {
	ep   int64
	path lwm2m.Path
}

type seriesInfo struct {
	id  int64
	typ lwm2m.DataType
}

// tailPoint is an uncompacted reading held in memory: the "resource" row
// id (so compaction can drop exactly what it moved) and the reading.
type tailPoint struct {
	row int64
	point
}

// telemetryCache holds the writer's id caches and the per-series tail of
// readings not yet packed into chunks. Queries read chunks and the tail
// under view.RLock; compaction commits and trims the tail under
// view.Lock, so a query never sees a reading twice or not at all.
type telemetryCache struct {
	mu        sync.Mutex
	endpoints map[string]int64
	series    map[seriesKey]seriesInfo

	view   sync.RWMutex
	tail   map[int64][]tailPoint
	nTail  int
	latest map[int64]latestRow // newest committed reading per series

	// marks is each series' compaction watermark (see migration 0003),
	// guarded by view.
	marks map[int64]int64

	// seenWritten is the last_seen last written per endpoint id; only
	// the writer touches it.
	seenWritten map[int64]int64

	// nextRow is the id of the next raw reading (see watermark.go); only
	// the writer touches it.
	nextRow int64
}

func (c *telemetryCache) init() {
	c.endpoints = map[string]int64{}
	c.series = map[seriesKey]seriesInfo{}
	c.tail = map[int64][]tailPoint{}
	c.latest = map[int64]latestRow{}
	c.seenWritten = map[int64]int64{}
	c.marks = map[int64]int64{}
}

func (c *telemetryCache) watermark(s int64) int64 {
	c.view.RLock()
	defer c.view.RUnlock()
	return c.marks[s]
}

// setWatermarks records compacted watermarks. The caller holds view.Lock.
func (c *telemetryCache) setWatermarks(ids []int64, row int64) {
	for _, s := range ids {
		c.marks[s] = row
	}
}

// mergeLatestLocked keeps the newer of the known and the given latest
// readings. The caller holds view.Lock.
func (c *telemetryCache) mergeLatestLocked(m map[int64]latestRow) {
	for s, l := range m {
		if o, ok := c.latest[s]; !ok || l.t >= o.t {
			c.latest[s] = l
		}
	}
}

func (c *telemetryCache) endpointID(name string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.endpoints[name]
	return id, ok
}

func (c *telemetryCache) seriesOf(k seriesKey) (seriesInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.series[k]
	return s, ok
}

func (c *telemetryCache) remember(eps map[string]int64, ser map[seriesKey]seriesInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range eps {
		c.endpoints[k] = v
	}
	for k, v := range ser {
		c.series[k] = v
	}
}

func (c *telemetryCache) forgetEndpoint(name string, seriesIDs []int64) {
	c.mu.Lock()
	id, ok := c.endpoints[name]
	delete(c.endpoints, name)
	if ok {
		for k := range c.series {
			if k.ep == id {
				delete(c.series, k)
			}
		}
	}
	c.mu.Unlock()
	c.view.Lock()
	for _, s := range seriesIDs {
		c.nTail -= len(c.tail[s])
		delete(c.tail, s)
		delete(c.latest, s)
		delete(c.marks, s)
	}
	c.view.Unlock()
}

func (c *telemetryCache) appendTailLocked(add map[int64][]tailPoint) {
	for s, pts := range add {
		c.tail[s] = append(c.tail[s], pts...)
		c.nTail += len(pts)
	}
}

// trimTailLocked drops the tail readings with row id <= upTo for the
// given series. The caller holds view.Lock.
func (c *telemetryCache) trimTailLocked(series map[int64]bool, upTo int64) {
	for s := range series {
		pts := c.tail[s]
		i := sort.Search(len(pts), func(i int) bool { return pts[i].row > upTo })
		c.nTail -= i
		if i == len(pts) {
			delete(c.tail, s)
		} else {
			c.tail[s] = append([]tailPoint(nil), pts[i:]...)
		}
	}
}

// tailRangeLocked appends the tail readings of a series within
// [from, to] (ms). The caller holds view.RLock.
func (c *telemetryCache) tailRangeLocked(dst []point, s int64, from, to int64) []point {
	for _, p := range c.tail[s] {
		if p.t >= from && p.t <= to {
			dst = append(dst, p.point)
		}
	}
	return dst
}

// loadTelemetry fills the id caches and rebuilds the tail from the
// uncompacted "resource" rows, which survive a crash because they were
// committed.
func (d *DB) loadTelemetry(ctx context.Context) error {
	rows, err := d.w.QueryContext(ctx, `SELECT id, name FROM endpoint`)
	if err != nil {
		return fmt.Errorf("store: load endpoints: %w", err)
	}
	eps := map[string]int64{}
	for rows.Next() {
		var id int64
		var n string
		if err := rows.Scan(&id, &n); err != nil {
			rows.Close()
			return fmt.Errorf("store: load endpoints: %w", err)
		}
		eps[n] = id
	}
	rows.Close()
	rows, err = d.w.QueryContext(ctx, `SELECT id, endpoint_id, path, type, compacted_row FROM series`)
	if err != nil {
		return fmt.Errorf("store: load series: %w", err)
	}
	ser := map[seriesKey]seriesInfo{}
	marks := map[int64]int64{}
	for rows.Next() {
		var id, ep, mark int64
		var p string
		var t int
		if err := rows.Scan(&id, &ep, &p, &t, &mark); err != nil {
			rows.Close()
			return fmt.Errorf("store: load series: %w", err)
		}
		path, err := lwm2m.ParsePath(p)
		if err != nil {
			continue
		}
		ser[seriesKey{ep, path}] = seriesInfo{id, lwm2m.DataType(t)}
		marks[id] = mark
	}
	rows.Close()
	d.tel.view.Lock()
	d.tel.marks = marks
	d.tel.view.Unlock()
	d.tel.remember(eps, ser)

	add := map[int64][]tailPoint{}
	var top int64 // the highest row id, and below: the highest watermark
	n, err := d.scanRaw(ctx, 0, -1, func(tp tailPoint, s int64) {
		top = tp.row
		if tp.row <= marks[s] {
			return // already in a chunk; the compactor deletes it
		}
		add[s] = append(add[s], tp)
	})
	if err != nil {
		return fmt.Errorf("store: load recent readings: %w", err)
	}
	latest := map[int64]latestRow{}
	for s, pts := range add {
		for _, p := range pts {
			if l, ok := latest[s]; !ok || p.t >= l.t {
				latest[s] = latestRow{p.t, p.v}
			}
		}
	}
	d.tel.view.Lock()
	d.tel.appendTailLocked(add)
	d.tel.mergeLatestLocked(latest)
	d.tel.view.Unlock()
	d.rawRows.Store(int64(n))
	// Raw readings' ids start above every id in the table and every
	// watermark (watermark.go).
	for _, m := range marks {
		top = max(top, m)
	}
	d.tel.nextRow = top + 1
	return nil
}

func scanResourceRow(rows interface{ Scan(...any) error }) (tailPoint, int64, error) {
	var id, s, t int64
	var typ int
	var num *int64
	var txt *string
	var blb []byte
	if err := rows.Scan(&id, &s, &t, &typ, &num, &txt, &blb); err != nil {
		return tailPoint{}, 0, err
	}
	var n uint64
	if num != nil {
		n = uint64(*num)
	}
	var str string
	if txt != nil {
		str = *txt
	}
	return tailPoint{row: id, point: point{t: t, v: valueFrom(lwm2m.DataType(typ), n, str, blb)}}, s, nil
}

// ResourceType is the name and data type of one resource of one object,
// from the object models (the seed's ResourceType).
type ResourceType struct {
	ObjectID   uint16         `json:"objectId"`
	ResourceID uint16         `json:"resourceId"`
	Name       string         `json:"name"`
	Type       lwm2m.DataType `json:"type"`
	Units      string         `json:"units"`
}

// SyncResourceTypes upserts a resource type for every resource of every
// model in the registry.
func (d *DB) SyncResourceTypes(ctx context.Context, reg *lwm2m.Registry) error {
	err := d.tx(ctx, func(ctx context.Context, tx txLike) error {
		st, err := tx.PrepareContext(ctx, `INSERT INTO resource_type(object_id, resource_id, name, type, units) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(object_id, resource_id) DO UPDATE SET name = excluded.name, type = excluded.type, units = excluded.units`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, o := range reg.Objects() {
			for _, id := range o.ResourceIDs() {
				r := o.Resources[id]
				if _, err := st.ExecContext(ctx, o.ID, r.ID, r.Name, int(r.Type), r.Units); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return wrap(err, "sync resource types")
}

// ResourceTypes lists the known resource types by object and resource id.
func (d *DB) ResourceTypes(ctx context.Context) ([]ResourceType, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT object_id, resource_id, name, type, units FROM resource_type ORDER BY object_id, resource_id`)
	if err != nil {
		return nil, wrap(err, "resource types")
	}
	defer rows.Close()
	var out []ResourceType
	for rows.Next() {
		var r ResourceType
		var t int
		if err := rows.Scan(&r.ObjectID, &r.ResourceID, &r.Name, &t, &r.Units); err != nil {
			return nil, wrap(err, "resource types")
		}
		r.Type = lwm2m.DataType(t)
		out = append(out, r)
	}
	return out, wrap(rows.Err(), "resource types")
}
