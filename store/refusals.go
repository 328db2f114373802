package store

import (
	"context"
	"fmt"
	"time"
)

// Refusal is what the appliance knows of registrations it refused from one
// endpoint name: how many, when, from where and the last reason.
type Refusal struct {
	Endpoint string
	Count    int64
	Reason   string
	Address  string
	First    time.Time
	Last     time.Time
}

// maxRefusals bounds the table: a device spraying made-up names keeps
// the newest names, not the disk busy. Retention trims to it.
const maxRefusals = 1000

// maxRefusalField bounds a stored name or reason.
const maxRefusalField = 256

// RecordRefusal counts one refused registration of endpoint with its reason.
func (d *DB) RecordRefusal(ctx context.Context, endpoint, reason, address string) error {
	endpoint, reason = clip(endpoint, maxRefusalField), clip(reason, maxRefusalField)
	now := d.ms(d.now())
	_, err := d.exec(ctx, `INSERT INTO refused_registration(endpoint, count, reason, address, first, last) VALUES (?, 1, ?, ?, ?, ?)
		ON CONFLICT(endpoint) DO UPDATE SET count = count + 1, reason = excluded.reason, address = excluded.address, last = excluded.last`,
		endpoint, reason, address, now, now)
	return wrap(err, "record refusal of %q", endpoint)
}

// Refusals lists refused endpoint names, the most recently refused first.
func (d *DB) Refusals(ctx context.Context, limit int) ([]Refusal, error) {
	if limit <= 0 || limit > maxRefusals {
		limit = 100
	}
	rows, err := d.r.QueryContext(ctx, `SELECT endpoint, count, reason, address, first, last FROM refused_registration ORDER BY last DESC, endpoint LIMIT ?`, limit)
	if err != nil {
		return nil, wrap(err, "list refusals")
	}
	defer rows.Close()
	var out []Refusal
	for rows.Next() {
		var r Refusal
		var f, l int64
		if err := rows.Scan(&r.Endpoint, &r.Count, &r.Reason, &r.Address, &f, &l); err != nil {
			return nil, wrap(err, "list refusals")
		}
		r.First, r.Last = fromMS(f), fromMS(l)
		out = append(out, r)
	}
	return out, wrap(rows.Err(), "list refusals")
}

// ClearRefusal forgets an endpoint's refusals (once it is provisioned or
// accepted); forgetting an unknown name is not an error.
func (d *DB) ClearRefusal(ctx context.Context, endpoint string) error {
	_, err := d.exec(ctx, `DELETE FROM refused_registration WHERE endpoint = ?`, endpoint)
	return wrap(err, "clear refusal of %q", endpoint)
}

// trimRefusals keeps the newest maxRefusals names and drops what is older
// than the retention cutoff (Unix ms).
func (d *DB) trimRefusals(ctx context.Context, cut int64) (int64, error) {
	n, err := d.exec(ctx, `DELETE FROM refused_registration WHERE last < ? OR endpoint IN
		(SELECT endpoint FROM refused_registration ORDER BY last DESC LIMIT -1 OFFSET ?)`, cut, maxRefusals)
	if err != nil {
		return 0, fmt.Errorf("store: trim refusals: %w", err)
	}
	return n, nil
}

// clip cuts s to at most n bytes, on a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }
