package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Setting returns the JSON value stored under key, decoded into dst;
// ErrNotFound when the key was never set.
func (d *DB) Setting(ctx context.Context, key string, dst any) error {
	var raw string
	if err := d.r.QueryRowContext(ctx, `SELECT value FROM setting WHERE key = ?`, key).Scan(&raw); err != nil {
		return wrap(err, "setting %q", key)
	}
	if err := json.Unmarshal([]byte(raw), dst); err != nil {
		return fmt.Errorf("store: setting %q: %w", key, err)
	}
	return nil
}

// SetSetting stores v as JSON under key.
func (d *DB) SetSetting(ctx context.Context, key string, v any) error {
	if key == "" {
		return fmt.Errorf("store: set setting: %w: empty key", ErrInvalid)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: set setting %q: %w", key, err)
	}
	_, err = d.exec(ctx, `INSERT INTO setting(key, value, updated) VALUES (?, ?, ?)
		ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated = excluded.updated`, key, string(b), d.ms(d.now()))
	return wrap(err, "set setting %q", key)
}

// DeleteSetting removes a key; removing an absent key is not an error.
func (d *DB) DeleteSetting(ctx context.Context, key string) error {
	_, err := d.exec(ctx, `DELETE FROM setting WHERE key = ?`, key)
	return wrap(err, "delete setting %q", key)
}

// Settings returns every setting as raw JSON by key.
func (d *DB) Settings(ctx context.Context) (map[string]json.RawMessage, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT key, value FROM setting ORDER BY key`)
	if err != nil {
		return nil, wrap(err, "list settings")
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, wrap(err, "list settings")
		}
		out[k] = json.RawMessage(v)
	}
	return out, wrap(rows.Err(), "list settings")
}

// AuditEntry is one line of the audit log: who did what to which target.
type AuditEntry struct {
	ID     int64     `json:"id"`
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target"`
	Detail string    `json:"detail"`
}

// Audit appends an entry; a zero Time means now.
func (d *DB) Audit(ctx context.Context, e AuditEntry) (int64, error) {
	if e.Actor == "" || e.Action == "" {
		return 0, fmt.Errorf("store: audit: %w: actor and action are required", ErrInvalid)
	}
	if e.Time.IsZero() {
		e.Time = d.now()
	}
	res, err := d.w.ExecContext(ctx, `INSERT INTO audit(t, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)`,
		d.ms(e.Time), e.Actor, e.Action, e.Target, e.Detail)
	if err != nil {
		return 0, wrap(err, "audit")
	}
	return res.LastInsertId()
}

// AuditLog returns up to limit entries older than beforeID (0: newest),
// newest first.
func (d *DB) AuditLog(ctx context.Context, beforeID int64, limit int) ([]AuditEntry, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := d.r.QueryContext(ctx, `SELECT id, t, actor, action, target, detail FROM audit
		WHERE ? = 0 OR id < ? ORDER BY id DESC LIMIT ?`, beforeID, beforeID, limit)
	if err != nil {
		return nil, wrap(err, "audit log")
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Actor, &e.Action, &e.Target, &e.Detail); err != nil {
			return nil, wrap(err, "audit log")
		}
		e.Time = fromMS(t)
		out = append(out, e)
	}
	return out, wrap(rows.Err(), "audit log")
}
