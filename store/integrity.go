package store

import (
	"context"
	"fmt"
	"strings"
)

// IntegrityCheck runs SQLite's PRAGMA integrity_check and returns nil
// when it answers "ok", else an error listing what it found (the fault
// tests and `flownexus` diagnostics use it after a crash).
func (d *DB) IntegrityCheck(ctx context.Context) error {
	rows, err := d.r.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		return wrap(err, "integrity check")
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return wrap(err, "integrity check")
		}
		found = append(found, s)
	}
	if err := rows.Err(); err != nil {
		return wrap(err, "integrity check")
	}
	if len(found) == 1 && found[0] == "ok" {
		return nil
	}
	return fmt.Errorf("store: integrity check: %s", strings.Join(found, "; "))
}
