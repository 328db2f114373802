package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// LogLine is one line a device logged.
type LogLine struct {
	ID       int64     `json:"id"`
	Endpoint string    `json:"endpoint"`
	Time     time.Time `json:"t"`
	Line     string    `json:"line"`
}

// AddDeviceLog appends lines received from a device at t; ErrNotFound
// when the endpoint is unknown.
func (d *DB) AddDeviceLog(ctx context.Context, endpoint string, t time.Time, lines ...string) error {
	err := d.tx(ctx, func(tx *sql.Tx) error {
		var ep int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, endpoint).Scan(&ep); err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO device_log(endpoint_id, t, line) VALUES (?, ?, ?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, l := range lines {
			if _, err := st.ExecContext(ctx, ep, d.ms(t), l); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap(err, "device log of %q", endpoint)
}

// DeviceLogs returns up to limit lines of an endpoint older than beforeID
// (0: newest), newest first.
func (d *DB) DeviceLogs(ctx context.Context, endpoint string, beforeID int64, limit int) ([]LogLine, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	var ep int64
	if err := d.r.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, endpoint).Scan(&ep); err != nil {
		return nil, wrap(err, "device log of %q", endpoint)
	}
	rows, err := d.r.QueryContext(ctx, `SELECT id, t, line FROM device_log WHERE endpoint_id = ? AND (? = 0 OR id < ?) ORDER BY id DESC LIMIT ?`,
		ep, beforeID, beforeID, limit)
	if err != nil {
		return nil, wrap(err, "device log of %q", endpoint)
	}
	defer rows.Close()
	out := []LogLine{}
	for rows.Next() {
		l := LogLine{Endpoint: endpoint}
		var t int64
		if err := rows.Scan(&l.ID, &t, &l.Line); err != nil {
			return nil, fmt.Errorf("store: device log of %q: %w", endpoint, err)
		}
		l.Time = fromMS(t)
		out = append(out, l)
	}
	return out, wrap(rows.Err(), "device log of %q", endpoint)
}
