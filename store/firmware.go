package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Firmware is an image in the library. The file itself lives under the
// data dir (package firmware); the database keeps its metadata.
type Firmware struct {
	ID       int64     `json:"id"`
	Version  string    `json:"version"`
	Name     string    `json:"name"`
	FileName string    `json:"fileName"`
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Notes    string    `json:"notes,omitempty"`
	Target   string    `json:"target,omitempty"`
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

const fwCols = `id, version, name, file_name, sha256, size, notes, target, created, updated`

func scanFirmware(row interface{ Scan(...any) error }) (Firmware, error) {
	var f Firmware
	var c, u int64
	err := row.Scan(&f.ID, &f.Version, &f.Name, &f.FileName, &f.SHA256, &f.Size, &f.Notes, &f.Target, &c, &u)
	f.Created, f.Updated = fromMS(c), fromMS(u)
	return f, err
}

// AddFirmware records an image; ErrConflict when one with the same
// SHA-256 exists.
func (d *DB) AddFirmware(ctx context.Context, f Firmware) (Firmware, error) {
	if f.Version == "" || f.FileName == "" || len(f.SHA256) != 64 || f.Size < 0 {
		return Firmware{}, fmt.Errorf("store: add firmware: %w: need version, file name, hex SHA-256 and size", ErrInvalid)
	}
	f.SHA256 = strings.ToLower(f.SHA256)
	now := d.ms(d.now())
	res, err := d.w.ExecContext(ctx, `INSERT INTO firmware(version, name, file_name, sha256, size, notes, target, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		f.Version, f.Name, f.FileName, f.SHA256, f.Size, f.Notes, f.Target, now, now)
	if err != nil {
		return Firmware{}, wrap(err, "add firmware %s", f.Version)
	}
	id, _ := res.LastInsertId()
	return d.FirmwareByID(ctx, id)
}

// FirmwareByID returns an image's metadata.
func (d *DB) FirmwareByID(ctx context.Context, id int64) (Firmware, error) {
	f, err := scanFirmware(d.w.QueryRowContext(ctx, `SELECT `+fwCols+` FROM firmware WHERE id = ?`, id))
	return f, wrap(err, "firmware %d", id)
}

// FirmwareBySHA256 finds an image by its hash.
func (d *DB) FirmwareBySHA256(ctx context.Context, sum string) (Firmware, error) {
	f, err := scanFirmware(d.r.QueryRowContext(ctx, `SELECT `+fwCols+` FROM firmware WHERE sha256 = ?`, strings.ToLower(sum)))
	return f, wrap(err, "firmware %s", sum)
}

// Firmwares lists the library, newest first.
func (d *DB) Firmwares(ctx context.Context) ([]Firmware, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+fwCols+` FROM firmware ORDER BY id DESC`)
	if err != nil {
		return nil, wrap(err, "list firmware")
	}
	defer rows.Close()
	out := []Firmware{}
	for rows.Next() {
		f, err := scanFirmware(rows)
		if err != nil {
			return nil, wrap(err, "list firmware")
		}
		out = append(out, f)
	}
	return out, wrap(rows.Err(), "list firmware")
}

// UpdateFirmware changes an image's version and name.
func (d *DB) UpdateFirmware(ctx context.Context, id int64, version, name string) error {
	if version == "" {
		return fmt.Errorf("store: update firmware %d: %w: empty version", id, ErrInvalid)
	}
	n, err := d.exec(ctx, `UPDATE firmware SET version = ?, name = ?, updated = ? WHERE id = ?`, version, name, d.ms(d.now()), id)
	if err != nil {
		return wrap(err, "update firmware %d", id)
	}
	if n == 0 {
		return fmt.Errorf("store: update firmware %d: %w", id, ErrNotFound)
	}
	return nil
}

// DeleteFirmware removes an image; ErrConflict while a deployment uses it.
func (d *DB) DeleteFirmware(ctx context.Context, id int64) error {
	n, err := d.exec(ctx, `DELETE FROM firmware WHERE id = ?`, id)
	if err != nil {
		return wrap(err, "delete firmware %d", id)
	}
	if n == 0 {
		return fmt.Errorf("store: delete firmware %d: %w", id, ErrNotFound)
	}
	return nil
}
