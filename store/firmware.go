package store

import (
	"context"
	"database/sql"
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
	Created  time.Time `json:"created"`
	Updated  time.Time `json:"updated"`
}

const fwCols = `id, version, name, file_name, sha256, size, created, updated`

func scanFirmware(row interface{ Scan(...any) error }) (Firmware, error) {
	var f Firmware
	var c, u int64
	err := row.Scan(&f.ID, &f.Version, &f.Name, &f.FileName, &f.SHA256, &f.Size, &c, &u)
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
	res, err := d.w.ExecContext(ctx, `INSERT INTO firmware(version, name, file_name, sha256, size, created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		f.Version, f.Name, f.FileName, f.SHA256, f.Size, now, now)
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

// Deployment states and per-device states.
const (
	DeploymentRunning   = "running"
	DeploymentDone      = "done"
	DeploymentCancelled = "cancelled"

	DevicePending     = "pending"
	DeviceDownloading = "downloading"
	DeviceDownloaded  = "downloaded"
	DeviceUpdating    = "updating"
	DeviceSucceeded   = "succeeded"
	DeviceFailed      = "failed"
)

// Deployment rolls one image out to a set of endpoints.
type Deployment struct {
	ID         int64              `json:"id"`
	FirmwareID int64              `json:"firmwareId"`
	Status     string             `json:"status"`
	Created    time.Time          `json:"created"`
	Updated    time.Time          `json:"updated"`
	Devices    []DeploymentDevice `json:"devices"`
}

// DeploymentDevice is one endpoint's progress in a deployment. Result is
// the last Object 5 Update Result (5/0/5).
type DeploymentDevice struct {
	Endpoint string    `json:"endpoint"`
	State    string    `json:"state"`
	Result   int       `json:"result"`
	Error    string    `json:"error,omitempty"`
	Updated  time.Time `json:"updated"`
}

// CreateDeployment starts a deployment of an image to endpoints, each
// pending; ErrNotFound when the image or an endpoint is unknown.
func (d *DB) CreateDeployment(ctx context.Context, firmwareID int64, endpoints []string) (Deployment, error) {
	if len(endpoints) == 0 {
		return Deployment{}, fmt.Errorf("store: create deployment: %w: no endpoints", ErrInvalid)
	}
	now := d.ms(d.now())
	var id int64
	err := d.tx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM firmware WHERE id = ?`, firmwareID).Scan(&one); err != nil {
			return fmt.Errorf("firmware %d: %w", firmwareID, ErrNotFound)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO deployment(firmware_id, status, created, updated) VALUES (?, 'running', ?, ?)`, firmwareID, now, now)
		if err != nil {
			return err
		}
		id, _ = res.LastInsertId()
		for _, ep := range endpoints {
			var eid int64
			if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, ep).Scan(&eid); err != nil {
				return fmt.Errorf("endpoint %q: %w", ep, ErrNotFound)
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO deployment_device(deployment_id, endpoint_id, state, updated) VALUES (?, ?, 'pending', ?)`,
				id, eid, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Deployment{}, wrap(err, "create deployment")
	}
	return d.deploymentFrom(ctx, d.w, id)
}

type queryer interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

func (d *DB) deploymentFrom(ctx context.Context, q queryer, id int64) (Deployment, error) {
	var dep Deployment
	var c, u int64
	if err := q.QueryRowContext(ctx, `SELECT id, firmware_id, status, created, updated FROM deployment WHERE id = ?`, id).
		Scan(&dep.ID, &dep.FirmwareID, &dep.Status, &c, &u); err != nil {
		return Deployment{}, wrap(err, "deployment %d", id)
	}
	dep.Created, dep.Updated = fromMS(c), fromMS(u)
	rows, err := q.QueryContext(ctx, `SELECT e.name, dd.state, dd.result, dd.error, dd.updated FROM deployment_device dd
		JOIN endpoint e ON e.id = dd.endpoint_id WHERE dd.deployment_id = ? ORDER BY e.name`, id)
	if err != nil {
		return Deployment{}, wrap(err, "deployment %d", id)
	}
	defer rows.Close()
	dep.Devices = []DeploymentDevice{}
	for rows.Next() {
		var dd DeploymentDevice
		var t int64
		if err := rows.Scan(&dd.Endpoint, &dd.State, &dd.Result, &dd.Error, &t); err != nil {
			return Deployment{}, wrap(err, "deployment %d", id)
		}
		dd.Updated = fromMS(t)
		dep.Devices = append(dep.Devices, dd)
	}
	return dep, wrap(rows.Err(), "deployment %d", id)
}

// Deployment returns a deployment with its devices.
func (d *DB) Deployment(ctx context.Context, id int64) (Deployment, error) {
	return d.deploymentFrom(ctx, d.r, id)
}

// Deployments lists deployments newest first, without their devices.
func (d *DB) Deployments(ctx context.Context) ([]Deployment, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT id, firmware_id, status, created, updated FROM deployment ORDER BY id DESC`)
	if err != nil {
		return nil, wrap(err, "list deployments")
	}
	defer rows.Close()
	out := []Deployment{}
	for rows.Next() {
		var dep Deployment
		var c, u int64
		if err := rows.Scan(&dep.ID, &dep.FirmwareID, &dep.Status, &c, &u); err != nil {
			return nil, wrap(err, "list deployments")
		}
		dep.Created, dep.Updated = fromMS(c), fromMS(u)
		out = append(out, dep)
	}
	return out, wrap(rows.Err(), "list deployments")
}

// SetDeploymentStatus sets a deployment's overall status.
func (d *DB) SetDeploymentStatus(ctx context.Context, id int64, status string) error {
	n, err := d.exec(ctx, `UPDATE deployment SET status = ?, updated = ? WHERE id = ?`, status, d.ms(d.now()), id)
	if err != nil {
		return wrap(err, "deployment %d", id)
	}
	if n == 0 {
		return fmt.Errorf("store: deployment %d: %w", id, ErrNotFound)
	}
	return nil
}

var deviceStates = map[string]bool{DevicePending: true, DeviceDownloading: true, DeviceDownloaded: true, DeviceUpdating: true, DeviceSucceeded: true, DeviceFailed: true}

// SetDeploymentDevice records one endpoint's progress.
func (d *DB) SetDeploymentDevice(ctx context.Context, id int64, endpoint, state string, result int, errMsg string) error {
	if !deviceStates[state] {
		return fmt.Errorf("store: deployment %d: %w: device state %q", id, ErrInvalid, state)
	}
	n, err := d.exec(ctx, `UPDATE deployment_device SET state = ?, result = ?, error = ?, updated = ?
		WHERE deployment_id = ? AND endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`, state, result, errMsg, d.ms(d.now()), id, endpoint)
	if err != nil {
		return wrap(err, "deployment %d device %q", id, endpoint)
	}
	if n == 0 {
		return fmt.Errorf("store: deployment %d device %q: %w", id, endpoint, ErrNotFound)
	}
	return nil
}

// ActiveDeploymentsOf lists the running deployments that include an
// endpoint and have not finished for it (the orchestrator resumes them
// when the device registers).
func (d *DB) ActiveDeploymentsOf(ctx context.Context, endpoint string) ([]int64, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT dd.deployment_id FROM deployment_device dd JOIN deployment p ON p.id = dd.deployment_id
		WHERE p.status = 'running' AND dd.state NOT IN ('succeeded', 'failed')
		AND dd.endpoint_id = (SELECT id FROM endpoint WHERE name = ?) ORDER BY 1`, endpoint)
	if err != nil {
		return nil, wrap(err, "deployments of %q", endpoint)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		rows.Scan(&id)
		out = append(out, id)
	}
	return out, wrap(rows.Err(), "deployments of %q", endpoint)
}
