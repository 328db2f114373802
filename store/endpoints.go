package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Endpoint is a device known to the appliance: its latest registration
// (Core §6.2.1 parameters) and its state.
type Endpoint struct {
	ID             int64  `json:"id"`
	Name           string `json:"endpoint"`
	RegistrationID string `json:"registrationId"`
	Online         bool   `json:"online"`
	// Pending: an unknown endpoint waiting for an admin to accept it.
	Pending  bool      `json:"pending"`
	LastSeen time.Time `json:"lastSeen"`
	// Lifetime is the registration lifetime in seconds (lt).
	Lifetime        int64  `json:"lifetime"`
	Binding         string `json:"binding"`
	LwM2MVersion    string `json:"lwm2mVersion"`
	QueueMode       bool   `json:"queueMode"`
	SecurityMode    string `json:"security"`
	ObjectLinks     string `json:"objects"`
	Address         string `json:"address"`
	FirmwareVersion string `json:"firmwareVersion"`
	// Model is the Model Number the device reports (3/0/1); "" until read.
	Model          string    `json:"model"`
	RegisteredAt   time.Time `json:"registeredAt"`
	DeregisteredAt time.Time `json:"deregisteredAt"`
	Created        time.Time `json:"created"`
}

const endpointCols = `id, name, registration_id, online, pending, last_seen, lifetime, binding, lwm2m_version,
	queue_mode, security_mode, object_links, address, firmware_version, registered_at, deregistered_at, created, model`

func scanEndpoint(row interface{ Scan(...any) error }) (Endpoint, error) {
	var e Endpoint
	var ls, ra, da, cr int64
	err := row.Scan(&e.ID, &e.Name, &e.RegistrationID, &e.Online, &e.Pending, &ls, &e.Lifetime, &e.Binding,
		&e.LwM2MVersion, &e.QueueMode, &e.SecurityMode, &e.ObjectLinks, &e.Address, &e.FirmwareVersion, &ra, &da, &cr, &e.Model)
	e.LastSeen, e.RegisteredAt, e.DeregisteredAt, e.Created = fromMS(ls), fromMS(ra), fromMS(da), fromMS(cr)
	return e, err
}

// UpsertEndpoint records a registration: it creates the endpoint or
// overwrites its registration fields with e's (Online, LastSeen,
// Lifetime, Binding, LwM2MVersion, QueueMode, ObjectLinks, Address,
// RegistrationID, RegisteredAt, DeregisteredAt). SecurityMode and
// FirmwareVersion are overwritten only when non-empty; Pending only on
// creation. It returns the stored row.
func (d *DB) UpsertEndpoint(ctx context.Context, e Endpoint) (Endpoint, error) {
	return d.upsertEndpointWith(ctx, e, nil)
}

// writeRegistrationFields writes e's registration fields in tx: on a row
// that keeps its online flag, security mode and firmware version (a
// device registering again, as regCache knows it) with an UPDATE that
// leaves those columns' indexes alone, since SQLite maintains only the
// indexes of the columns an UPDATE sets; else with the full upsert.
func (d *DB) writeRegistrationFields(ctx context.Context, tx *sql.Tx, e Endpoint) error {
	if d.regs.keeps(e) {
		res, err := tx.ExecContext(ctx, reRegisterSQL, e.RegistrationID, d.ms(e.LastSeen), e.Lifetime, e.Binding,
			e.LwM2MVersion, b2i(e.QueueMode), e.ObjectLinks, e.Address, d.ms(e.RegisteredAt), d.ms(e.DeregisteredAt), e.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil
		}
	}
	_, err := tx.ExecContext(ctx, upsertEndpointSQL,
		e.Name, e.RegistrationID, b2i(e.Online), b2i(e.Pending), d.ms(e.LastSeen), e.Lifetime, e.Binding, e.LwM2MVersion,
		b2i(e.QueueMode), e.SecurityMode, e.ObjectLinks, e.Address, e.FirmwareVersion, d.ms(e.RegisteredAt),
		d.ms(e.DeregisteredAt), d.ms(d.now()))
	return err
}

// upsertEndpointWith is UpsertEndpoint, with more writes in the same
// transaction when also is not nil (given the row as written).
func (d *DB) upsertEndpointWith(ctx context.Context, e Endpoint, also func(context.Context, *sql.Tx, Endpoint) error) (Endpoint, error) {
	e.Name = strings.TrimSpace(e.Name)
	if e.Name == "" {
		return Endpoint{}, fmt.Errorf("store: upsert endpoint: %w: empty name", ErrInvalid)
	}
	d.stats.endpointWrites.Add(1)
	g := d.regs.gen.Load()
	out, err := d.writeEndpoint(ctx, e.Name, func(ctx context.Context, tx *sql.Tx) error {
		return d.writeRegistrationFields(ctx, tx, e)
	}, also)
	if err != nil {
		return Endpoint{}, wrap(err, "upsert endpoint %q", e.Name)
	}
	d.regs.remember(e, g)
	return out, nil
}

const upsertEndpointSQL = `INSERT INTO endpoint(name, registration_id, online, pending, last_seen, lifetime, binding,
	lwm2m_version, queue_mode, security_mode, object_links, address, firmware_version, registered_at, deregistered_at, created)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT(name) DO UPDATE SET registration_id = excluded.registration_id, online = excluded.online,
	last_seen = excluded.last_seen, lifetime = excluded.lifetime, binding = excluded.binding,
	lwm2m_version = excluded.lwm2m_version, queue_mode = excluded.queue_mode,
	security_mode = CASE WHEN excluded.security_mode = '' THEN security_mode ELSE excluded.security_mode END,
	object_links = excluded.object_links, address = excluded.address,
	firmware_version = CASE WHEN excluded.firmware_version = '' THEN firmware_version ELSE excluded.firmware_version END,
	registered_at = excluded.registered_at, deregistered_at = excluded.deregistered_at`

const reRegisterSQL = `UPDATE endpoint SET registration_id = ?, last_seen = ?, lifetime = ?, binding = ?,
	lwm2m_version = ?, queue_mode = ?, object_links = ?, address = ?, registered_at = ?, deregistered_at = ?
	WHERE name = ?`

// CreateEndpoint adds an endpoint that is not registered yet (a
// provisioned device); ErrConflict when the name exists.
func (d *DB) CreateEndpoint(ctx context.Context, e Endpoint) (Endpoint, error) {
	e.Name = strings.TrimSpace(e.Name)
	if e.Name == "" {
		return Endpoint{}, fmt.Errorf("store: create endpoint: %w: empty name", ErrInvalid)
	}
	out, err := d.writeEndpoint(ctx, e.Name, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO endpoint(name, pending, security_mode, created) VALUES (?, ?, ?, ?)`,
			e.Name, b2i(e.Pending), e.SecurityMode, d.ms(d.now()))
		return err
	}, nil)
	if err != nil {
		return Endpoint{}, wrap(err, "create endpoint %q", e.Name)
	}
	return out, nil
}

// writeEndpoint runs write on an endpoint row, reads the row back and
// gives it to then (when not nil), all in one transaction.
func (d *DB) writeEndpoint(ctx context.Context, name string, write func(context.Context, *sql.Tx) error,
	then func(context.Context, *sql.Tx, Endpoint) error) (Endpoint, error) {
	var out Endpoint
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := write(ctx, tx); err != nil {
			return err
		}
		var err error
		if out, err = d.endpointFrom(ctx, tx, name); err != nil || then == nil {
			return err
		}
		return then(ctx, tx, out)
	})
	return out, err
}

func (d *DB) endpointFrom(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, name string) (Endpoint, error) {
	e, err := scanEndpoint(q.QueryRowContext(ctx, `SELECT `+endpointCols+` FROM endpoint WHERE name = ?`, name))
	return e, wrap(err, "endpoint %q", name)
}

// Endpoint returns an endpoint by name.
func (d *DB) Endpoint(ctx context.Context, name string) (Endpoint, error) {
	return d.endpointFrom(ctx, d.r, name)
}

// EndpointByID returns an endpoint by id.
func (d *DB) EndpointByID(ctx context.Context, id int64) (Endpoint, error) {
	e, err := scanEndpoint(d.r.QueryRowContext(ctx, `SELECT `+endpointCols+` FROM endpoint WHERE id = ?`, id))
	return e, wrap(err, "endpoint %d", id)
}

func (d *DB) updateEndpoint(ctx context.Context, name, what, q string, args ...any) error {
	n, err := d.exec(ctx, q, args...)
	if err != nil {
		return wrap(err, "endpoint %q: %s", name, what)
	}
	if n == 0 {
		return fmt.Errorf("store: endpoint %q: %s: %w", name, what, ErrNotFound)
	}
	return nil
}

// TouchEndpoint marks an endpoint online and seen at t (any message from
// it); address is kept when empty.
func (d *DB) TouchEndpoint(ctx context.Context, name string, t time.Time, address string) error {
	defer d.regs.invalidate() // after the write: see regCache
	return d.updateEndpoint(ctx, name, "touch", `UPDATE endpoint SET online = 1, last_seen = MAX(last_seen, ?),
		address = CASE WHEN ? = '' THEN address ELSE ? END WHERE name = ?`, d.ms(t), address, address, name)
}

// SetEndpointOffline marks an endpoint offline at t; deregistered also
// records t as its deregistration time (a De-register, not an expiry).
func (d *DB) SetEndpointOffline(ctx context.Context, name string, t time.Time, deregistered bool) error {
	defer d.regs.invalidate() // after the write: see regCache
	if deregistered {
		return d.updateEndpoint(ctx, name, "deregister", `UPDATE endpoint SET online = 0, deregistered_at = ? WHERE name = ?`, d.ms(t), name)
	}
	return d.updateEndpoint(ctx, name, "set offline", `UPDATE endpoint SET online = 0 WHERE name = ?`, name)
}

// ExpireEndpoints marks offline every online endpoint whose lifetime plus
// grace has run out since it was last seen, and returns their names.
func (d *DB) ExpireEndpoints(ctx context.Context, now time.Time, grace time.Duration) ([]string, error) {
	var names []string
	defer d.regs.invalidate() // after the write: see regCache
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE endpoint SET online = 0
			WHERE online = 1 AND lifetime > 0 AND last_seen + lifetime * 1000 + ? < ? RETURNING name`,
			grace.Milliseconds(), d.ms(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			names = append(names, n)
		}
		return rows.Err()
	})
	return names, wrap(err, "expire endpoints")
}

// SetEndpointFirmwareVersion records the version a device reports (3/0/3).
func (d *DB) SetEndpointFirmwareVersion(ctx context.Context, name, version string) error {
	return d.updateEndpoint(ctx, name, "set firmware version", `UPDATE endpoint SET firmware_version = ? WHERE name = ?`, version, name)
}

// SetEndpointModel records the model a device reports (3/0/1, Model
// Number); it writes only when the model changed.
func (d *DB) SetEndpointModel(ctx context.Context, name, model string) error {
	n, err := d.exec(ctx, `UPDATE endpoint SET model = ? WHERE name = ? AND model != ?`, model, name, model)
	if err != nil {
		return wrap(err, "endpoint %q: set model", name)
	}
	if n == 0 {
		// Unchanged, or no such endpoint.
		_, err := d.endpointFrom(ctx, d.r, name)
		return err
	}
	return nil
}

// Models lists the distinct models devices report, for the device list's
// filter and the deploy form.
func (d *DB) Models(ctx context.Context) ([]string, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT DISTINCT model FROM endpoint WHERE model != '' ORDER BY 1`)
	if err != nil {
		return nil, wrap(err, "models")
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, wrap(err, "models")
		}
		out = append(out, v)
	}
	return out, wrap(rows.Err(), "models")
}

// SetEndpointPending accepts (false) or parks (true) an endpoint.
func (d *DB) SetEndpointPending(ctx context.Context, name string, pending bool) error {
	return d.updateEndpoint(ctx, name, "set pending", `UPDATE endpoint SET pending = ? WHERE name = ?`, b2i(pending), name)
}

// SetEndpointSecurityMode records the mode a device uses or must use.
func (d *DB) SetEndpointSecurityMode(ctx context.Context, name, mode string) error {
	defer d.regs.invalidate() // after the write: see regCache
	return d.updateEndpoint(ctx, name, "set security mode", `UPDATE endpoint SET security_mode = ? WHERE name = ?`, mode, name)
}

// DeleteEndpoint removes an endpoint with everything that belongs to it
// (credentials, telemetry series, events, operations, logs).
func (d *DB) DeleteEndpoint(ctx context.Context, name string) error {
	var ids []int64
	defer d.regs.invalidate()  // after the write: see regCache
	defer d.creds.invalidate() // and credCache: its credential goes with it
	err := d.txResettingMarks(ctx, func(tx *sql.Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, name).Scan(&id); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT id FROM series WHERE endpoint_id = ?`, id)
		if err != nil {
			return err
		}
		for rows.Next() {
			var s int64
			rows.Scan(&s)
			ids = append(ids, s)
		}
		rows.Close()
		for _, s := range ids {
			for _, q := range []string{`DELETE FROM chunk WHERE series_id = ?`, `DELETE FROM rollup_minute WHERE series_id = ?`,
				`DELETE FROM rollup_hour WHERE series_id = ?`, `DELETE FROM resource WHERE series_id = ?`} {
				if _, err := tx.ExecContext(ctx, q, s); err != nil {
					return err
				}
			}
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM endpoint WHERE id = ?`, id)
		return err
	})
	if err != nil {
		return wrap(err, "delete endpoint %q", name)
	}
	d.tel.forgetEndpoint(name, ids)
	return nil
}

// EndpointQuery filters, sorts and pages the device list. Zero fields do
// not filter.
type EndpointQuery struct {
	// Search matches a substring of the endpoint name (case-insensitive).
	Search          string
	Online          *bool
	Pending         *bool
	SecurityMode    string
	FirmwareVersion string
	// Model matches the reported model (3/0/1) exactly.
	Model string
	// Sort is one of name, lastSeen, registeredAt, firmwareVersion,
	// security, online, model; a leading "-" sorts descending. Default: name.
	Sort   string
	Limit  int // default 50, at most 1000
	Offset int
}

var endpointSorts = map[string]string{
	"name": "name", "lastSeen": "last_seen", "registeredAt": "registered_at",
	"firmwareVersion": "firmware_version", "security": "security_mode", "online": "online", "model": "model",
}

// ListEndpoints returns one page of endpoints matching q and the number
// of all matches.
func (d *DB) ListEndpoints(ctx context.Context, q EndpointQuery) ([]Endpoint, int, error) {
	var where []string
	var args []any
	if q.Search != "" {
		where = append(where, `name LIKE ? ESCAPE '\'`)
		r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
		args = append(args, "%"+r.Replace(q.Search)+"%")
	}
	if q.Online != nil {
		where = append(where, `online = ?`)
		args = append(args, b2i(*q.Online))
	}
	if q.Pending != nil {
		where = append(where, `pending = ?`)
		args = append(args, b2i(*q.Pending))
	}
	if q.SecurityMode != "" {
		where = append(where, `security_mode = ?`)
		args = append(args, q.SecurityMode)
	}
	if q.FirmwareVersion != "" {
		where = append(where, `firmware_version = ?`)
		args = append(args, q.FirmwareVersion)
	}
	if q.Model != "" {
		where = append(where, `model = ?`)
		args = append(args, q.Model)
	}
	w := ""
	if len(where) > 0 {
		w = " WHERE " + strings.Join(where, " AND ")
	}
	key, desc := strings.CutPrefix(q.Sort, "-")
	col, ok := endpointSorts[key]
	if q.Sort == "" {
		col, ok = "name", true
	}
	if !ok {
		return nil, 0, fmt.Errorf("store: list endpoints: %w: unknown sort %q", ErrInvalid, q.Sort)
	}
	order := col
	if desc {
		order += " DESC"
	}
	if col != "name" {
		order += ", name"
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	if q.Limit > 1000 {
		q.Limit = 1000
	}
	if q.Offset < 0 {
		q.Offset = 0
	}
	var total int
	if err := d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM endpoint`+w, args...).Scan(&total); err != nil {
		return nil, 0, wrap(err, "list endpoints")
	}
	rows, err := d.r.QueryContext(ctx, `SELECT `+endpointCols+` FROM endpoint`+w+` ORDER BY `+order+` LIMIT ? OFFSET ?`,
		append(args, q.Limit, q.Offset)...)
	if err != nil {
		return nil, 0, wrap(err, "list endpoints")
	}
	defer rows.Close()
	out := []Endpoint{}
	for rows.Next() {
		e, err := scanEndpoint(rows)
		if err != nil {
			return nil, 0, wrap(err, "list endpoints")
		}
		out = append(out, e)
	}
	return out, total, wrap(rows.Err(), "list endpoints")
}

// EndpointCounts summarises the fleet for the dashboard.
type EndpointCounts struct {
	Total    int `json:"total"`
	Online   int `json:"online"`
	Offline  int `json:"offline"`
	Sleeping int `json:"sleeping"` // online in queue mode
	Pending  int `json:"pending"`
}

// CountEndpoints returns the fleet summary.
func (d *DB) CountEndpoints(ctx context.Context) (EndpointCounts, error) {
	var c EndpointCounts
	err := d.r.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(online), 0), COALESCE(SUM(online = 1 AND queue_mode = 1), 0),
		COALESCE(SUM(pending), 0) FROM endpoint`).Scan(&c.Total, &c.Online, &c.Sleeping, &c.Pending)
	c.Offline = c.Total - c.Online
	return c, wrap(err, "count endpoints")
}

// CountEndpointsAsleep is CountEndpoints with Sleeping as the device list
// shows it: online queue-mode devices not heard from since awakeSince (the
// queue-mode window ago), rather than every online queue-mode device.
func (d *DB) CountEndpointsAsleep(ctx context.Context, awakeSince time.Time) (EndpointCounts, error) {
	var c EndpointCounts
	err := d.r.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(online), 0),
		COALESCE(SUM(online = 1 AND queue_mode = 1 AND last_seen < ?), 0),
		COALESCE(SUM(pending), 0) FROM endpoint`, d.ms(awakeSince)).Scan(&c.Total, &c.Online, &c.Sleeping, &c.Pending)
	c.Offline = c.Total - c.Online
	return c, wrap(err, "count endpoints")
}

// FirmwareVersions lists the distinct firmware versions devices report,
// for the device list's filter.
func (d *DB) FirmwareVersions(ctx context.Context) ([]string, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT DISTINCT firmware_version FROM endpoint WHERE firmware_version != '' ORDER BY 1`)
	if err != nil {
		return nil, wrap(err, "firmware versions")
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		rows.Scan(&v)
		out = append(out, v)
	}
	return out, wrap(rows.Err(), "firmware versions")
}
