package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// Registration event kinds: the resource ids of the seed's object 10240.
const (
	RegRegistered   = 0
	RegUnregistered = 1
	RegUpdated      = 2
)

// RegistrationObject is the object whose resources record registration
// events, so they are counted like any other resource.
const RegistrationObject = 10240

var regKinds = [...]string{"registered", "unregistered", "updated"}

// Event kinds recorded by this package's helpers.
const (
	EventRegistered   = "registered"
	EventUnregistered = "unregistered"
	EventUpdated      = "updated"
	EventComposite    = "composite"
)

// RecordRegistration records a registration event (RegRegistered,
// RegUnregistered or RegUpdated) at t: a reading of /10240/0/<kind> with
// the time as value, and an Event of that kind linking it. It goes
// through the ingestion queue, waiting for room until ctx ends.
func (d *DB) RecordRegistration(ctx context.Context, endpoint string, kind int, t time.Time, detail string) error {
	if kind < 0 || kind >= len(regKinds) {
		return fmt.Errorf("store: record registration of %q: %w: kind %d", endpoint, ErrInvalid, kind)
	}
	return d.IngestWait(ctx, registrationEvent(endpoint, kind, t, detail))
}

// registrationEvent is the batch of a registration event of a valid kind.
func registrationEvent(endpoint string, kind int, t time.Time, detail string) Batch {
	return Batch{
		Endpoint: endpoint, Received: t, Event: regKinds[kind], EventDetail: detail,
		Records: []lwm2m.Record{{Path: lwm2m.NewPath(RegistrationObject, 0, uint16(kind)), Value: lwm2m.Time(t), Time: t}},
	}
}

// Event is a significant occurrence at one endpoint (a registration, a
// composite notification), with the readings it grouped.
type Event struct {
	ID        int64          `json:"id"`
	Endpoint  string         `json:"endpoint"`
	Time      time.Time      `json:"t"`
	Kind      string         `json:"kind"`
	Detail    string         `json:"detail,omitempty"`
	Resources []EventReading `json:"resources"`
}

// EventReading is one reading linked to an event (EventResource), with
// the value in its text form.
type EventReading struct {
	Path  string    `json:"path"`
	Time  time.Time `json:"t"`
	Value string    `json:"v"`
}

// EventQuery selects events, newest first.
type EventQuery struct {
	Endpoint string // empty: all endpoints
	Kind     string
	BeforeID int64
	Limit    int // default 100, at most 1000
}

// Events lists events newest first with their readings.
func (d *DB) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	var where []string
	var args []any
	if q.Endpoint != "" {
		where = append(where, `v.endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`)
		args = append(args, q.Endpoint)
	}
	if q.Kind != "" {
		where = append(where, `v.kind = ?`)
		args = append(args, q.Kind)
	}
	if q.BeforeID > 0 {
		where = append(where, `v.id < ?`)
		args = append(args, q.BeforeID)
	}
	w := ""
	if len(where) > 0 {
		w = " WHERE " + strings.Join(where, " AND ")
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	rows, err := d.r.QueryContext(ctx, `SELECT v.id, e.name, v.t, v.kind, v.detail FROM event v JOIN endpoint e ON e.id = v.endpoint_id`+w+
		` ORDER BY v.id DESC LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, wrap(err, "events")
	}
	out := []Event{}
	byID := map[int64]int{}
	for rows.Next() {
		var e Event
		var t int64
		if err := rows.Scan(&e.ID, &e.Endpoint, &t, &e.Kind, &e.Detail); err != nil {
			rows.Close()
			return nil, wrap(err, "events")
		}
		e.Time = fromMS(t)
		e.Resources = []EventReading{}
		byID[e.ID] = len(out)
		out = append(out, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap(err, "events")
	}
	if len(out) == 0 {
		return out, nil
	}
	// By id list, not id range: one device's events lie far apart among
	// the whole fleet's.
	ids := make([]any, len(out))
	for i, e := range out {
		ids[i] = e.ID
	}
	lrows, err := d.r.QueryContext(ctx, `SELECT r.event_id, s.path, r.t, r.value FROM event_resource r JOIN series s ON s.id = r.series_id
		WHERE r.event_id IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")+`) ORDER BY r.event_id, s.path`, ids...)
	if err != nil {
		return nil, wrap(err, "event readings")
	}
	defer lrows.Close()
	for lrows.Next() {
		var id, t int64
		var r EventReading
		if err := lrows.Scan(&id, &r.Path, &t, &r.Value); err != nil {
			return nil, wrap(err, "event readings")
		}
		if i, ok := byID[id]; ok {
			r.Time = fromMS(t)
			out[i].Resources = append(out[i].Resources, r)
		}
	}
	return out, wrap(lrows.Err(), "event readings")
}

// CountReadings counts an endpoint's readings of one resource within
// [from, to] — e.g. registrations (/10240/0/0) per day.
func (d *DB) CountReadings(ctx context.Context, endpoint string, path lwm2m.Path, from, to time.Time) (int, error) {
	s, err := d.seriesID(ctx, endpoint, path)
	if err != nil {
		return 0, err
	}
	pts, err := d.rawRange(ctx, s.ID, from.UnixMilli(), to.UnixMilli())
	return len(pts), wrap(err, "count readings")
}
