package store

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"time"
)

// Deployment states and per-device states.
const (
	DeploymentRunning   = "running"
	DeploymentDone      = "done"
	DeploymentCancelled = "cancelled"
	// DeploymentHalted: the failure share passed the deployment's
	// threshold; no further device starts until a retry.
	DeploymentHalted = "halted"

	DevicePending     = "pending"
	DeviceDownloading = "downloading"
	DeviceDownloaded  = "downloaded"
	DeviceUpdating    = "updating"
	DeviceSucceeded   = "succeeded"
	DeviceFailed      = "failed"
)

// Deployment rolls one image out to a set of endpoints.
type Deployment struct {
	ID         int64  `json:"id"`
	FirmwareID int64  `json:"firmwareId"`
	Status     string `json:"status"`
	// MaxConcurrent bounds the devices between downloading and updating
	// at once (0: no bound); DeviceTimeout fails a device whose step takes
	// longer (0: none); FailureThreshold halts the deployment when the
	// failed share of its devices passes it (0: never).
	MaxConcurrent    int                `json:"maxConcurrent"`
	DeviceTimeout    time.Duration      `json:"-"`
	FailureThreshold float64            `json:"failureThreshold"`
	Reason           string             `json:"reason,omitempty"`
	Created          time.Time          `json:"created"`
	Updated          time.Time          `json:"updated"`
	Devices          []DeploymentDevice `json:"devices"`
}

// DeploymentDevice is one endpoint's progress in a deployment. Result is
// the last Object 5 Update Result (5/0/5).
type DeploymentDevice struct {
	DeploymentID int64     `json:"-"`
	FirmwareID   int64     `json:"-"`
	Endpoint     string    `json:"endpoint"`
	State        string    `json:"state"`
	Result       int       `json:"result"`
	Error        string    `json:"error,omitempty"`
	Token        string    `json:"-"`
	Method       string    `json:"method,omitempty"`
	Progress     int64     `json:"progress"`
	Started      time.Time `json:"started,omitzero"`
	FromVersion  string    `json:"fromVersion,omitempty"`
	Updated      time.Time `json:"updated"`
	// DeploymentStatus is the deployment's own status (in listings that
	// span deployments).
	DeploymentStatus string `json:"-"`
}

// Final reports whether the device's part of the deployment has ended.
func (dd DeploymentDevice) Final() bool {
	return dd.State == DeviceSucceeded || dd.State == DeviceFailed
}

// DeploymentSpec is what CreateDeployment needs.
type DeploymentSpec struct {
	FirmwareID       int64
	Endpoints        []string
	MaxConcurrent    int
	DeviceTimeout    time.Duration
	FailureThreshold float64
}

func newToken() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CreateDeployment starts a deployment of an image to endpoints, each
// pending with its own download token; ErrNotFound when the image or an
// endpoint is unknown, and then nothing is written.
func (d *DB) CreateDeployment(ctx context.Context, firmwareID int64, endpoints []string) (Deployment, error) {
	return d.CreateDeploymentSpec(ctx, DeploymentSpec{FirmwareID: firmwareID, Endpoints: endpoints})
}

// CreateDeploymentSpec is CreateDeployment with a rollout policy.
func (d *DB) CreateDeploymentSpec(ctx context.Context, sp DeploymentSpec) (Deployment, error) {
	if len(sp.Endpoints) == 0 {
		return Deployment{}, fmt.Errorf("store: create deployment: %w: no endpoints", ErrInvalid)
	}
	if sp.MaxConcurrent < 0 || sp.DeviceTimeout < 0 || sp.FailureThreshold < 0 || sp.FailureThreshold > 1 {
		return Deployment{}, fmt.Errorf("store: create deployment: %w: concurrency and timeout must not be negative, the failure threshold must lie in 0..1", ErrInvalid)
	}
	now := d.ms(d.now())
	var id int64
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM firmware WHERE id = ?`, sp.FirmwareID).Scan(&one); err != nil {
			return fmt.Errorf("firmware %d: %w", sp.FirmwareID, ErrNotFound)
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO deployment(firmware_id, status, max_concurrent, device_timeout, failure_threshold, created, updated)
			VALUES (?, 'running', ?, ?, ?, ?, ?)`, sp.FirmwareID, sp.MaxConcurrent, int64(sp.DeviceTimeout/time.Second), sp.FailureThreshold, now, now)
		if err != nil {
			return err
		}
		id, _ = res.LastInsertId()
		for _, ep := range sp.Endpoints {
			var eid int64
			var ver string
			if err := tx.QueryRowContext(ctx, `SELECT id, firmware_version FROM endpoint WHERE name = ?`, ep).Scan(&eid, &ver); err != nil {
				return fmt.Errorf("endpoint %q: %w", ep, ErrNotFound)
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO deployment_device(deployment_id, endpoint_id, state, token, from_version, updated)
				VALUES (?, ?, 'pending', ?, ?, ?)`, id, eid, newToken(), ver, now); err != nil {
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

const depCols = `id, firmware_id, status, max_concurrent, device_timeout, failure_threshold, reason, created, updated`

func scanDeployment(row interface{ Scan(...any) error }) (Deployment, error) {
	var dep Deployment
	var c, u, to int64
	err := row.Scan(&dep.ID, &dep.FirmwareID, &dep.Status, &dep.MaxConcurrent, &to, &dep.FailureThreshold, &dep.Reason, &c, &u)
	dep.DeviceTimeout = time.Duration(to) * time.Second
	dep.Created, dep.Updated = fromMS(c), fromMS(u)
	return dep, err
}

const ddCols = `dd.deployment_id, p.firmware_id, p.status, e.name, dd.state, dd.result, dd.error, dd.token, dd.method, dd.progress, dd.started, dd.from_version, dd.updated`
const ddFrom = ` FROM deployment_device dd JOIN deployment p ON p.id = dd.deployment_id JOIN endpoint e ON e.id = dd.endpoint_id `

func scanDD(row interface{ Scan(...any) error }) (DeploymentDevice, error) {
	var dd DeploymentDevice
	var st, u int64
	err := row.Scan(&dd.DeploymentID, &dd.FirmwareID, &dd.DeploymentStatus, &dd.Endpoint, &dd.State, &dd.Result, &dd.Error,
		&dd.Token, &dd.Method, &dd.Progress, &st, &dd.FromVersion, &u)
	if st != 0 {
		dd.Started = fromMS(st)
	}
	dd.Updated = fromMS(u)
	return dd, err
}

func (d *DB) deploymentDevices(ctx context.Context, q queryer, where string, args ...any) ([]DeploymentDevice, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+ddCols+ddFrom+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []DeploymentDevice{}
	for rows.Next() {
		dd, err := scanDD(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, dd)
	}
	return out, rows.Err()
}

func (d *DB) deploymentFrom(ctx context.Context, q queryer, id int64) (Deployment, error) {
	dep, err := scanDeployment(q.QueryRowContext(ctx, `SELECT `+depCols+` FROM deployment WHERE id = ?`, id))
	if err != nil {
		return Deployment{}, wrap(err, "deployment %d", id)
	}
	dep.Devices, err = d.deploymentDevices(ctx, q, `WHERE dd.deployment_id = ? ORDER BY e.name`, id)
	return dep, wrap(err, "deployment %d", id)
}

// Deployment returns a deployment with its devices.
func (d *DB) Deployment(ctx context.Context, id int64) (Deployment, error) {
	return d.deploymentFrom(ctx, d.r, id)
}

// DeploymentHeader returns a deployment's policy and status without its
// devices: what the orchestrator reads at every step of one device, which
// must not cost a read of every device of a large deployment.
func (d *DB) DeploymentHeader(ctx context.Context, id int64) (Deployment, error) {
	dep, err := scanDeployment(d.r.QueryRowContext(ctx, `SELECT `+depCols+` FROM deployment WHERE id = ?`, id))
	return dep, wrap(err, "deployment %d", id)
}

// Deployments lists deployments newest first, without their devices.
func (d *DB) Deployments(ctx context.Context) ([]Deployment, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+depCols+` FROM deployment ORDER BY id DESC`)
	if err != nil {
		return nil, wrap(err, "list deployments")
	}
	defer rows.Close()
	out := []Deployment{}
	for rows.Next() {
		dep, err := scanDeployment(rows)
		if err != nil {
			return nil, wrap(err, "list deployments")
		}
		out = append(out, dep)
	}
	return out, wrap(rows.Err(), "list deployments")
}

// SetDeploymentStatus sets a deployment's overall status.
func (d *DB) SetDeploymentStatus(ctx context.Context, id int64, status string) error {
	return d.SetDeploymentStatusReason(ctx, id, status, "")
}

// SetDeploymentStatusReason sets a deployment's status and says why.
func (d *DB) SetDeploymentStatusReason(ctx context.Context, id int64, status, reason string) error {
	n, err := d.exec(ctx, `UPDATE deployment SET status = ?, reason = ?, updated = ? WHERE id = ?`, status, reason, d.ms(d.now()), id)
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
	return d.UpdateDeploymentDevice(ctx, id, endpoint, DeviceChange{State: state, Result: result, Error: errMsg})
}

// DeviceChange is a step of one endpoint in a deployment. Method and
// Started are kept when empty/zero; Restart starts the step's clock now.
type DeviceChange struct {
	State   string
	Result  int
	Error   string
	Method  string
	Restart bool
	// ResetProgress sets the bytes served back to zero (a retry).
	ResetProgress bool
	// FromVersion, when set, is the version the device ran before this
	// update (3/0/3), for a device whose version was not yet known when
	// the deployment was created; a recorded one is kept.
	FromVersion string
}

// UpdateDeploymentDevice records a change of one endpoint's state.
func (d *DB) UpdateDeploymentDevice(ctx context.Context, id int64, endpoint string, c DeviceChange) error {
	if !deviceStates[c.State] {
		return fmt.Errorf("store: deployment %d: %w: device state %q", id, ErrInvalid, c.State)
	}
	now := d.ms(d.now())
	started := int64(-1)
	if c.Restart {
		started = now
	}
	n, err := d.exec(ctx, `UPDATE deployment_device SET state = ?, result = ?, error = ?,
		method = CASE WHEN ? = '' THEN method ELSE ? END,
		started = CASE WHEN ? < 0 THEN started ELSE ? END,
		progress = CASE WHEN ? THEN 0 ELSE progress END,
		from_version = CASE WHEN from_version = '' THEN ? ELSE from_version END,
		updated = ?
		WHERE deployment_id = ? AND endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`,
		c.State, c.Result, c.Error, c.Method, c.Method, started, started, c.ResetProgress, c.FromVersion, now, id, endpoint)
	if err != nil {
		return wrap(err, "deployment %d device %q", id, endpoint)
	}
	if n == 0 {
		return fmt.Errorf("store: deployment %d device %q: %w", id, endpoint, ErrNotFound)
	}
	return nil
}

// SetDeploymentProgress records the bytes of the image served to an
// endpoint so far.
func (d *DB) SetDeploymentProgress(ctx context.Context, id int64, endpoint string, bytes int64) error {
	_, err := d.exec(ctx, `UPDATE deployment_device SET progress = MAX(progress, ?)
		WHERE deployment_id = ? AND endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`, bytes, id, endpoint)
	return wrap(err, "deployment %d device %q", id, endpoint)
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
		if err := rows.Scan(&id); err != nil {
			return nil, wrap(err, "deployments of %q", endpoint)
		}
		out = append(out, id)
	}
	return out, wrap(rows.Err(), "deployments of %q", endpoint)
}

// OpenDeploymentDevices lists the devices whose part has not ended, of
// every deployment, or of one endpoint when endpoint is not "". A halted
// or cancelled deployment's devices that are already under way are
// included: they finish what they started.
func (d *DB) OpenDeploymentDevices(ctx context.Context, endpoint string) ([]DeploymentDevice, error) {
	where := `WHERE dd.state NOT IN ('succeeded', 'failed') AND p.status != 'done'`
	args := []any{}
	if endpoint != "" {
		where += ` AND e.name = ?`
		args = append(args, endpoint)
	}
	out, err := d.deploymentDevices(ctx, d.r, where+` ORDER BY dd.deployment_id, e.name`, args...)
	return out, wrap(err, "open deployment devices")
}

// DeploymentDeviceByToken finds the device of a deployment by its
// download token.
func (d *DB) DeploymentDeviceByToken(ctx context.Context, token string) (DeploymentDevice, error) {
	out, err := d.deploymentDevices(ctx, d.r, `WHERE dd.token = ? AND dd.token != ''`, token)
	if err == nil && len(out) == 0 {
		err = sql.ErrNoRows
	}
	if err != nil {
		return DeploymentDevice{}, wrap(err, "download token")
	}
	return out[0], nil
}

// DeploymentCounts counts a deployment's devices by state.
func (d *DB) DeploymentCounts(ctx context.Context, id int64) (map[string]int, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM deployment_device WHERE deployment_id = ? GROUP BY state`, id)
	if err != nil {
		return nil, wrap(err, "deployment %d", id)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, wrap(err, "deployment %d", id)
		}
		out[s] = n
	}
	return out, wrap(rows.Err(), "deployment %d", id)
}

// RetryDeployment puts a deployment's failed devices back to pending and
// runs it again; it reports how many devices it requeued.
func (d *DB) RetryDeployment(ctx context.Context, id int64) (int, error) {
	var n int64
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := d.ms(d.now())
		res, err := tx.ExecContext(ctx, `UPDATE deployment SET status = 'running', reason = '', updated = ? WHERE id = ?`, now, id)
		if err != nil {
			return err
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return fmt.Errorf("deployment %d: %w", id, ErrNotFound)
		}
		res, err = tx.ExecContext(ctx, `UPDATE deployment_device SET state = 'pending', result = 0, error = '', progress = 0, started = 0, method = '', updated = ?
			WHERE deployment_id = ? AND state = 'failed'`, now, id)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), wrap(err, "retry deployment %d", id)
}

// DeploymentHistory lists an endpoint's part in every deployment, newest
// first (the device page's update history).
func (d *DB) DeploymentHistory(ctx context.Context, endpoint string) ([]DeploymentDevice, error) {
	out, err := d.deploymentDevices(ctx, d.r, `WHERE e.name = ? ORDER BY dd.deployment_id DESC`, endpoint)
	return out, wrap(err, "deployment history of %q", endpoint)
}
