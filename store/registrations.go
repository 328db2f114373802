package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// Registration is the saved state of an LwM2M registration (Core §6.2.1),
// kept so that it outlives a restart of the appliance.
type Registration struct {
	Endpoint     string
	ID           string // registration id, the location rd/<id>
	Lifetime     time.Duration
	LwM2MVersion string
	Binding      string
	QueueMode    bool
	SMSNumber    string
	ObjectLinks  string
	Address      string // ip:port of the device's last uplink
	DTLSSession  uint64 // the lwm2m/dtls session id; 0 for plain CoAP
	Identity     string // DTLS identity
	Listener     string // local address of the listener it talks to
	RegisteredAt time.Time
	LastUpdate   time.Time
}

// Observation is a saved observation (Core §6.4.1, RFC 7641) of a saved
// registration.
type Observation struct {
	Token          string // hex
	Endpoint       string
	RegistrationID string
	Paths          []lwm2m.Path
	Composite      bool
	Format         lwm2m.Format
	Started        time.Time
}

// RegistrationTouch moves a registration's last update time.
type RegistrationTouch struct {
	Endpoint, ID string
	LastUpdate   time.Time
}

// The writes of registration state (Save*, Touch*, DeleteObservation) are
// committed before they return and fsynced within a quarter of a second
// (lazysync.go); DeleteRegistration and the endpoint writes of a
// de-registration or a deletion sync at their commit.

// SaveRegistration creates or replaces the endpoint's saved registration.
// A registration with another id ends, observations included; an older
// one (RegisteredAt before the saved one's) does not replace a newer. The
// endpoint must exist (ErrNotFound).
func (d *DB) SaveRegistration(ctx context.Context, r Registration) error {
	if r.ID == "" || r.Lifetime <= 0 {
		return fmt.Errorf("store: save registration of %q: %w: no id or lifetime", r.Endpoint, ErrInvalid)
	}
	err := d.tx(registrationWrite(ctx), func(ctx context.Context, tx *sql.Tx) error { return d.saveRegistrationTx(ctx, tx, r, 0) })
	return wrap(err, "save registration of %q", r.Endpoint)
}

// SaveEndpointRegistration records a Register in one transaction:
// UpsertEndpoint's write of e, SaveRegistration's of r (the endpoint
// first), and the "registered" event that RecordRegistration would add
// (at r.RegisteredAt, with r.Address as its detail). A Register then
// costs one commit, not three, and writes the endpoint's pages once
// (issue 15).
func (d *DB) SaveEndpointRegistration(ctx context.Context, e Endpoint, r Registration) (Endpoint, error) {
	return d.saveEndpointRegistration(ctx, e, r, true)
}

// SaveEndpointReRegistration is SaveEndpointRegistration without the
// "registered" event: for a device that registers again while registered,
// whose last such event is recent (the appliance keeps one a minute). The
// event is three rows and their index entries, and a device in a
// registration loop would add them at every Register (issue 15).
func (d *DB) SaveEndpointReRegistration(ctx context.Context, e Endpoint, r Registration) (Endpoint, error) {
	return d.saveEndpointRegistration(ctx, e, r, false)
}

func (d *DB) saveEndpointRegistration(ctx context.Context, e Endpoint, r Registration, event bool) (Endpoint, error) {
	if r.ID == "" || r.Lifetime <= 0 || r.Endpoint != strings.TrimSpace(e.Name) {
		return Endpoint{}, fmt.Errorf("store: save registration of %q: %w: no id or lifetime, or another endpoint", r.Endpoint, ErrInvalid)
	}
	ctx = registrationWrite(ctx)
	if event {
		ctx = withFollowUp(ctx, registrationEvent(r.Endpoint, RegRegistered, r.RegisteredAt, r.Address))
	}
	return d.upsertEndpointWith(ctx, e, func(ctx context.Context, tx *sql.Tx, row Endpoint) error {
		return d.saveRegistrationTx(ctx, tx, r, row.ID)
	})
}

// saveRegistrationTx is SaveRegistration's write, in tx; epID is the
// endpoint's row id, 0 to look it up.
func (d *DB) saveRegistrationTx(ctx context.Context, tx *sql.Tx, r Registration, epID int64) error {
	if epID == 0 {
		if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, r.Endpoint).Scan(&epID); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM lwm2m_observation WHERE endpoint_id = ? AND registration_id <> ?
		AND ? >= (SELECT registered_at FROM lwm2m_registration WHERE endpoint_id = ?)`,
		epID, r.ID, d.ms(r.RegisteredAt), epID); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO lwm2m_registration(endpoint_id, registration_id, lifetime,
		lwm2m_version, binding, queue_mode, sms_number, object_links, address, dtls_session, identity, listener,
		registered_at, last_update) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(endpoint_id) DO UPDATE SET registration_id = excluded.registration_id,
		lifetime = excluded.lifetime, lwm2m_version = excluded.lwm2m_version, binding = excluded.binding,
		queue_mode = excluded.queue_mode, sms_number = excluded.sms_number, object_links = excluded.object_links,
		address = excluded.address, dtls_session = excluded.dtls_session, identity = excluded.identity,
		listener = excluded.listener, registered_at = excluded.registered_at,
		last_update = MAX(excluded.last_update, CASE WHEN registration_id = excluded.registration_id THEN last_update ELSE 0 END)
		WHERE excluded.registered_at >= registered_at`,
		epID, r.ID, int64(r.Lifetime/time.Second), r.LwM2MVersion, r.Binding, b2i(r.QueueMode), r.SMSNumber,
		r.ObjectLinks, r.Address, int64(r.DTLSSession), r.Identity, r.Listener, d.ms(r.RegisteredAt), d.ms(r.LastUpdate))
	return err
}

// TouchRegistrations moves the last update time of saved registrations,
// all in one transaction (the appliance batches the Updates that changed
// nothing else). A touch of a registration no longer saved, or older than
// the saved time, changes nothing.
func (d *DB) TouchRegistrations(ctx context.Context, touches []RegistrationTouch) error {
	if len(touches) == 0 {
		return nil
	}
	err := d.tx(registrationWrite(ctx), func(ctx context.Context, tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `UPDATE lwm2m_registration SET last_update = MAX(last_update, ?)
			WHERE endpoint_id = (SELECT id FROM endpoint WHERE name = ?) AND registration_id = ?`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, t := range touches {
			if _, err := st.ExecContext(ctx, d.ms(t.LastUpdate), t.Endpoint, t.ID); err != nil {
				return err
			}
		}
		return nil
	})
	return wrap(err, "touch %d registrations", len(touches))
}

// DeleteRegistration ends the endpoint's saved registration id and its
// observations; another id (a newer registration) is left alone.
func (d *DB) DeleteRegistration(ctx context.Context, endpoint, id string) error {
	_, err := d.exec(ctx, `DELETE FROM lwm2m_registration
		WHERE endpoint_id = (SELECT id FROM endpoint WHERE name = ?) AND registration_id = ?`, endpoint, id)
	return wrap(err, "delete registration of %q", endpoint)
}

// SaveObservation saves an observation of a saved registration; one of a
// registration that is not (or no longer) saved is ErrNotFound.
func (d *DB) SaveObservation(ctx context.Context, o Observation) error {
	if o.Token == "" || len(o.Paths) == 0 {
		return fmt.Errorf("store: save observation of %q: %w: no token or path", o.Endpoint, ErrInvalid)
	}
	paths := make([]string, len(o.Paths))
	for i, p := range o.Paths {
		paths[i] = p.String()
	}
	n, err := d.exec(registrationWrite(ctx), `INSERT INTO lwm2m_observation(token, endpoint_id, registration_id, paths, composite, format, started)
		SELECT ?, r.endpoint_id, r.registration_id, ?, ?, ?, ? FROM lwm2m_registration r
		WHERE r.endpoint_id = (SELECT id FROM endpoint WHERE name = ?) AND r.registration_id = ?
		ON CONFLICT(token) DO UPDATE SET paths = excluded.paths, composite = excluded.composite,
		format = excluded.format, started = excluded.started`,
		o.Token, strings.Join(paths, " "), b2i(o.Composite), int64(o.Format), d.ms(o.Started), o.Endpoint, o.RegistrationID)
	if err == nil && n == 0 {
		err = fmt.Errorf("registration %q: %w", o.RegistrationID, ErrNotFound)
	}
	return wrap(err, "save observation of %q", o.Endpoint)
}

// DeleteObservation forgets a saved observation.
func (d *DB) DeleteObservation(ctx context.Context, token string) error {
	_, err := d.exec(registrationWrite(ctx), `DELETE FROM lwm2m_observation WHERE token = ?`, token)
	return wrap(err, "delete observation %s", token)
}

// Registrations returns the saved registrations and their observations.
func (d *DB) Registrations(ctx context.Context) ([]Registration, []Observation, error) {
	regs, err := d.registrations(ctx)
	if err != nil {
		return nil, nil, wrap(err, "registrations")
	}
	obs, err := d.observations(ctx)
	if err != nil {
		return nil, nil, wrap(err, "observations")
	}
	return regs, obs, nil
}

func (d *DB) registrations(ctx context.Context) ([]Registration, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT e.name, r.registration_id, r.lifetime, r.lwm2m_version, r.binding,
		r.queue_mode, r.sms_number, r.object_links, r.address, r.dtls_session, r.identity, r.listener,
		r.registered_at, r.last_update FROM lwm2m_registration r JOIN endpoint e ON e.id = r.endpoint_id ORDER BY e.name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Registration
	for rows.Next() {
		var r Registration
		var lt, sess, ra, lu int64
		if err := rows.Scan(&r.Endpoint, &r.ID, &lt, &r.LwM2MVersion, &r.Binding, &r.QueueMode, &r.SMSNumber,
			&r.ObjectLinks, &r.Address, &sess, &r.Identity, &r.Listener, &ra, &lu); err != nil {
			return nil, err
		}
		r.Lifetime, r.DTLSSession = time.Duration(lt)*time.Second, uint64(sess)
		r.RegisteredAt, r.LastUpdate = fromMS(ra), fromMS(lu)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (d *DB) observations(ctx context.Context) ([]Observation, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT o.token, e.name, o.registration_id, o.paths, o.composite, o.format, o.started
		FROM lwm2m_observation o JOIN endpoint e ON e.id = o.endpoint_id ORDER BY e.name, o.started`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Observation
	for rows.Next() {
		var o Observation
		var paths string
		var f, started int64
		if err := rows.Scan(&o.Token, &o.Endpoint, &o.RegistrationID, &paths, &o.Composite, &f, &started); err != nil {
			return nil, err
		}
		for _, s := range strings.Fields(paths) {
			p, err := lwm2m.ParsePath(s)
			if err != nil {
				return nil, fmt.Errorf("observation %s: %w", o.Token, err)
			}
			o.Paths = append(o.Paths, p)
		}
		o.Format, o.Started = lwm2m.Format(f), fromMS(started)
		out = append(out, o)
	}
	return out, rows.Err()
}

// PruneRegistrations deletes the saved registrations whose lifetime plus
// grace ran out since their last update (Core §6.2.1), marks their
// endpoints offline, and returns the endpoint names.
func (d *DB) PruneRegistrations(ctx context.Context, now time.Time, grace time.Duration) ([]string, error) {
	var names []string
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `DELETE FROM lwm2m_registration
			WHERE last_update + lifetime * 1000 + ? < ? RETURNING endpoint_id`, grace.Milliseconds(), d.ms(now))
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, id := range ids {
			var name string
			if err := tx.QueryRowContext(ctx, `UPDATE endpoint SET online = 0, deregistered_at = ? WHERE id = ? RETURNING name`,
				d.ms(now), id).Scan(&name); err != nil {
				return err
			}
			names = append(names, name)
		}
		return nil
	})
	return names, wrap(err, "prune registrations")
}

// SyncOnline makes "online" mean "has a saved registration": at start,
// endpoints whose registration was not saved (or expired) are marked
// offline, and those with one online. It returns how many are online.
func (d *DB) SyncOnline(ctx context.Context) (int, error) {
	var n int
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE endpoint SET online = 0
			WHERE online = 1 AND id NOT IN (SELECT endpoint_id FROM lwm2m_registration)`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE endpoint SET online = 1
			WHERE online = 0 AND id IN (SELECT endpoint_id FROM lwm2m_registration)`); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM endpoint WHERE online = 1`).Scan(&n)
	})
	return n, wrap(err, "sync online")
}
