package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Token is a named, long-lived API token with its own role, made by an
// admin in the web UI or with `flownexus token create`. Secret is filled
// only by CreateToken; the database keeps its SHA-256.
type Token struct {
	ID        int64
	Name      string
	Role      string
	Secret    string
	CreatedBy string
	Created   time.Time
	LastUsed  time.Time
	Expires   time.Time // zero: never
}

const tokenCols = `id, name, role, created_by, created, last_used, expires`

func scanToken(row interface{ Scan(...any) error }) (Token, error) {
	var t Token
	var c, l, e int64
	err := row.Scan(&t.ID, &t.Name, &t.Role, &t.CreatedBy, &c, &l, &e)
	t.Created, t.LastUsed, t.Expires = fromMS(c), fromMS(l), fromMS(e)
	return t, err
}

// CreateToken issues a named token; ErrConflict when the name is taken,
// ErrInvalid for an empty name, an unknown role or an expiry in the past.
func (d *DB) CreateToken(ctx context.Context, name, role, createdBy string, expires time.Time) (Token, error) {
	name = strings.TrimSpace(name)
	now := fromMS(d.ms(d.now()))
	switch {
	case name == "" || len(name) > 64:
		return Token{}, fmt.Errorf("store: create token %q: %w: the name must have 1 to 64 characters", name, ErrInvalid)
	case !ValidRole(role):
		return Token{}, fmt.Errorf("store: create token %q: %w: role must be admin, operator or viewer", name, ErrInvalid)
	case !expires.IsZero() && !expires.After(now):
		return Token{}, fmt.Errorf("store: create token %q: %w: the expiry is in the past", name, ErrInvalid)
	}
	secret, err := randomToken(32)
	if err != nil {
		return Token{}, fmt.Errorf("store: create token: %w", err)
	}
	secret = "fnx_" + secret
	res, err := d.w.ExecContext(ctx, `INSERT INTO token(name, role, token_hash, created_by, created, expires) VALUES (?, ?, ?, ?, ?, ?)`,
		name, role, HashSecret(secret), createdBy, d.ms(now), d.ms(expires))
	if err != nil {
		return Token{}, wrap(err, "create token %q", name)
	}
	id, _ := res.LastInsertId()
	return Token{ID: id, Name: name, Role: role, Secret: secret, CreatedBy: createdBy, Created: now, Expires: fromMS(d.ms(expires))}, nil
}

// TokenBySecret looks a token up by its secret and records its use; an
// unknown or expired token is ErrNotFound.
func (d *DB) TokenBySecret(ctx context.Context, secret string) (Token, error) {
	t, err := scanToken(d.r.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM token WHERE token_hash = ?`, HashSecret(secret)))
	if err != nil {
		return Token{}, wrap(err, "token")
	}
	now := d.now()
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return Token{}, fmt.Errorf("store: token %q: expired: %w", t.Name, ErrNotFound)
	}
	// Last use to the minute is enough, and spares a write per request.
	if now.Sub(t.LastUsed) >= time.Minute {
		if _, err := d.exec(ctx, `UPDATE token SET last_used = ? WHERE id = ?`, d.ms(now), t.ID); err != nil {
			return Token{}, wrap(err, "token %q: record use", t.Name)
		}
		t.LastUsed = fromMS(d.ms(now))
	}
	return t, nil
}

// Tokens lists the named tokens by name, without secrets.
func (d *DB) Tokens(ctx context.Context) ([]Token, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+tokenCols+` FROM token ORDER BY name`)
	if err != nil {
		return nil, wrap(err, "list tokens")
	}
	defer rows.Close()
	var out []Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, wrap(err, "list tokens")
		}
		out = append(out, t)
	}
	return out, wrap(rows.Err(), "list tokens")
}

// TokenByName returns a token by name (case-insensitive).
func (d *DB) TokenByName(ctx context.Context, name string) (Token, error) {
	t, err := scanToken(d.r.QueryRowContext(ctx, `SELECT `+tokenCols+` FROM token WHERE name = ?`, strings.TrimSpace(name)))
	return t, wrap(err, "token %q", name)
}

// DeleteToken revokes a token by id; ErrNotFound when there is none.
func (d *DB) DeleteToken(ctx context.Context, id int64) error {
	n, err := d.exec(ctx, `DELETE FROM token WHERE id = ?`, id)
	if err != nil {
		return wrap(err, "revoke token %d", id)
	}
	if n == 0 {
		return fmt.Errorf("store: revoke token %d: %w", id, ErrNotFound)
	}
	return nil
}
