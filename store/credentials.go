package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Security modes of a device credential.
const (
	ModeNoSec     = "nosec"
	ModePSK       = "psk"
	ModeX509      = "x509"
	ModeBootstrap = "bootstrap"
)

// Credential is how a device authenticates. The PSK key is stored as
// given (the appliance decides whether to show or export it); for
// certificates only the certificate is kept, never the device's key.
type Credential struct {
	Endpoint    string    `json:"endpoint"`
	Mode        string    `json:"mode"`
	PSKIdentity string    `json:"pskIdentity,omitempty"`
	PSKKey      []byte    `json:"-"`
	CertPEM     string    `json:"certificate,omitempty"`
	CertSerial  string    `json:"certSerial,omitempty"`
	Revoked     bool      `json:"revoked"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

func validMode(m string) bool {
	return m == ModeNoSec || m == ModePSK || m == ModeX509 || m == ModeBootstrap
}

func (c Credential) check() error {
	if strings.TrimSpace(c.Endpoint) == "" || !validMode(c.Mode) {
		return fmt.Errorf("%w: need an endpoint and mode nosec|psk|x509|bootstrap", ErrInvalid)
	}
	if c.Mode == ModePSK && (c.PSKIdentity == "" || len(c.PSKKey) == 0) {
		return fmt.Errorf("%w: psk mode needs an identity and a key", ErrInvalid)
	}
	return nil
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (d *DB) putCredential(ctx context.Context, tx *sql.Tx, epID int64, c Credential) error {
	now := d.ms(d.now())
	_, err := tx.ExecContext(ctx, `INSERT INTO credential(endpoint_id, mode, psk_identity, psk_key, cert_pem, cert_serial, revoked, created, updated)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(endpoint_id) DO UPDATE SET mode = excluded.mode, psk_identity = excluded.psk_identity,
		psk_key = excluded.psk_key, cert_pem = excluded.cert_pem, cert_serial = excluded.cert_serial,
		revoked = excluded.revoked, updated = excluded.updated`,
		epID, c.Mode, nullStr(c.PSKIdentity), c.PSKKey, c.CertPEM, c.CertSerial, b2i(c.Revoked), now, now)
	return err
}

// ProvisionEndpoint creates an endpoint with its credential in one
// transaction; ErrConflict when the endpoint or the PSK identity exists.
func (d *DB) ProvisionEndpoint(ctx context.Context, c Credential) (Endpoint, error) {
	c.Endpoint = strings.TrimSpace(c.Endpoint)
	if err := c.check(); err != nil {
		return Endpoint{}, fmt.Errorf("store: provision %q: %w", c.Endpoint, err)
	}
	defer d.creds.invalidate() // after the write: see credCache
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO endpoint(name, security_mode, created) VALUES (?, ?, ?)`, c.Endpoint, c.Mode, d.ms(d.now()))
		if err != nil {
			return err
		}
		id, _ := res.LastInsertId()
		return d.putCredential(ctx, tx, id, c)
	})
	if err != nil {
		return Endpoint{}, wrap(err, "provision %q", c.Endpoint)
	}
	return d.Endpoint(ctx, c.Endpoint)
}

// SetCredential creates or replaces an endpoint's credential, creating
// the endpoint row when missing; ErrConflict when the PSK identity
// belongs to another endpoint.
func (d *DB) SetCredential(ctx context.Context, c Credential) error {
	c.Endpoint = strings.TrimSpace(c.Endpoint)
	if err := c.check(); err != nil {
		return fmt.Errorf("store: set credential %q: %w", c.Endpoint, err)
	}
	defer d.regs.invalidate()  // after the write: see regCache
	defer d.creds.invalidate() // and credCache
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO endpoint(name, security_mode, created) VALUES (?, ?, ?)`,
			c.Endpoint, c.Mode, d.ms(d.now())); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE endpoint SET security_mode = ? WHERE name = ?`, c.Mode, c.Endpoint); err != nil {
			return err
		}
		var id int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, c.Endpoint).Scan(&id); err != nil {
			return err
		}
		return d.putCredential(ctx, tx, id, c)
	})
	return wrap(err, "set credential %q", c.Endpoint)
}

const credCols = `e.name, c.mode, COALESCE(c.psk_identity, ''), c.psk_key, c.cert_pem, c.cert_serial, c.revoked, c.created, c.updated`

func scanCredential(row interface{ Scan(...any) error }) (Credential, error) {
	var c Credential
	var cr, up int64
	err := row.Scan(&c.Endpoint, &c.Mode, &c.PSKIdentity, &c.PSKKey, &c.CertPEM, &c.CertSerial, &c.Revoked, &cr, &up)
	c.Created, c.Updated = fromMS(cr), fromMS(up)
	return c, err
}

// CredentialByCertSerial finds the credential holding a certificate serial.
func (d *DB) CredentialByCertSerial(ctx context.Context, serial string) (Credential, error) {
	c, err := scanCredential(d.r.QueryRowContext(ctx, `SELECT `+credCols+` FROM credential c JOIN endpoint e ON e.id = c.endpoint_id WHERE c.cert_serial = ?`, serial))
	return c, wrap(err, "credential for certificate serial %q", serial)
}

// RevokeCredential marks an endpoint's credential revoked.
func (d *DB) RevokeCredential(ctx context.Context, endpoint string) error {
	defer d.creds.invalidate() // after the write: see credCache
	n, err := d.exec(ctx, `UPDATE credential SET revoked = 1, updated = ? WHERE endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`,
		d.ms(d.now()), endpoint)
	if err != nil {
		return wrap(err, "revoke credential of %q", endpoint)
	}
	if n == 0 {
		return fmt.Errorf("store: revoke credential of %q: %w", endpoint, ErrNotFound)
	}
	return nil
}

// RevokedSerials lists the certificate serials of revoked credentials,
// for the handshake's revocation check.
func (d *DB) RevokedSerials(ctx context.Context) ([]string, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT cert_serial FROM credential WHERE revoked = 1 AND cert_serial != '' ORDER BY 1`)
	if err != nil {
		return nil, wrap(err, "revoked serials")
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		out = append(out, s)
	}
	return out, wrap(rows.Err(), "revoked serials")
}

// DeleteCredential removes an endpoint's credential.
func (d *DB) DeleteCredential(ctx context.Context, endpoint string) error {
	defer d.creds.invalidate() // after the write: see credCache
	n, err := d.exec(ctx, `DELETE FROM credential WHERE endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`, endpoint)
	if err != nil {
		return wrap(err, "delete credential of %q", endpoint)
	}
	if n == 0 {
		return fmt.Errorf("store: delete credential of %q: %w", endpoint, ErrNotFound)
	}
	return nil
}
