package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Roles a user can have.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

// ValidRole reports whether r is admin, operator or viewer.
func ValidRole(r string) bool { return r == RoleAdmin || r == RoleOperator || r == RoleViewer }

// User is a web UI / API account. PasswordHash is an opaque string (an
// argon2id PHC string); hashing and verifying are the caller's business.
type User struct {
	ID           int64     `json:"id"`
	Name         string    `json:"name"`
	PasswordHash string    `json:"-"`
	Role         string    `json:"role"`
	Disabled     bool      `json:"disabled"`
	Created      time.Time `json:"created"`
	LastLogin    time.Time `json:"lastLogin"`
}

const userCols = `id, name, password_hash, role, disabled, created, last_login`

func scanUser(row interface{ Scan(...any) error }) (User, error) {
	var u User
	var created, last int64
	err := row.Scan(&u.ID, &u.Name, &u.PasswordHash, &u.Role, &u.Disabled, &created, &last)
	u.Created, u.LastLogin = fromMS(created), fromMS(last)
	return u, err
}

// CreateUser adds a user; ErrConflict when the name (case-insensitive) is
// taken, ErrInvalid for an empty name or hash or an unknown role.
func (d *DB) CreateUser(ctx context.Context, name, passwordHash, role string) (User, error) {
	name = strings.TrimSpace(name)
	if name == "" || passwordHash == "" || !ValidRole(role) {
		return User{}, fmt.Errorf("store: create user %q: %w: need a name, a password hash and role admin|operator|viewer", name, ErrInvalid)
	}
	now := d.now()
	res, err := d.w.ExecContext(ctx, `INSERT INTO user(name, password_hash, role, created) VALUES (?, ?, ?, ?)`,
		name, passwordHash, role, d.ms(now))
	if err != nil {
		return User{}, wrap(err, "create user %q", name)
	}
	id, _ := res.LastInsertId()
	return User{ID: id, Name: name, PasswordHash: passwordHash, Role: role, Created: fromMS(d.ms(now))}, nil
}

// User returns a user by id.
func (d *DB) User(ctx context.Context, id int64) (User, error) {
	u, err := scanUser(d.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM user WHERE id = ?`, id))
	return u, wrap(err, "user %d", id)
}

// UserByName returns a user by name (case-insensitive).
func (d *DB) UserByName(ctx context.Context, name string) (User, error) {
	u, err := scanUser(d.r.QueryRowContext(ctx, `SELECT `+userCols+` FROM user WHERE name = ?`, strings.TrimSpace(name)))
	return u, wrap(err, "user %q", name)
}

// Users lists all users by name.
func (d *DB) Users(ctx context.Context) ([]User, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT `+userCols+` FROM user ORDER BY name`)
	if err != nil {
		return nil, wrap(err, "list users")
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, wrap(err, "list users")
		}
		out = append(out, u)
	}
	return out, wrap(rows.Err(), "list users")
}

// CountUsers returns the number of users (0 means first run).
func (d *DB) CountUsers(ctx context.Context) (int, error) {
	var n int
	err := d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM user`).Scan(&n)
	return n, wrap(err, "count users")
}

// CountAdmins returns the number of enabled admins, so callers can refuse
// to demote, disable or delete the last one.
func (d *DB) CountAdmins(ctx context.Context) (int, error) {
	var n int
	err := d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM user WHERE role = 'admin' AND disabled = 0`).Scan(&n)
	return n, wrap(err, "count admins")
}

func (d *DB) updateUser(ctx context.Context, id int64, what, q string, args ...any) error {
	n, err := d.exec(ctx, q, args...)
	if err != nil {
		return wrap(err, "user %d: %s", id, what)
	}
	if n == 0 {
		return fmt.Errorf("store: user %d: %s: %w", id, what, ErrNotFound)
	}
	return nil
}

// SetUserPassword replaces a user's password hash and ends their sessions.
func (d *DB) SetUserPassword(ctx context.Context, id int64, passwordHash string) error {
	if passwordHash == "" {
		return fmt.Errorf("store: user %d: set password: %w: empty hash", id, ErrInvalid)
	}
	if err := d.updateUser(ctx, id, "set password", `UPDATE user SET password_hash = ? WHERE id = ?`, passwordHash, id); err != nil {
		return err
	}
	_, err := d.exec(ctx, `DELETE FROM session WHERE user_id = ?`, id)
	return wrap(err, "user %d: end sessions", id)
}

// SetUserRole changes a user's role.
func (d *DB) SetUserRole(ctx context.Context, id int64, role string) error {
	if !ValidRole(role) {
		return fmt.Errorf("store: user %d: set role %q: %w", id, role, ErrInvalid)
	}
	return d.updateUser(ctx, id, "set role", `UPDATE user SET role = ? WHERE id = ?`, role, id)
}

// SetUserDisabled disables or enables a user; disabling ends their
// sessions and API tokens stay but stop working (callers check Disabled).
func (d *DB) SetUserDisabled(ctx context.Context, id int64, disabled bool) error {
	if err := d.updateUser(ctx, id, "set disabled", `UPDATE user SET disabled = ? WHERE id = ?`, b2i(disabled), id); err != nil {
		return err
	}
	if disabled {
		_, err := d.exec(ctx, `DELETE FROM session WHERE user_id = ?`, id)
		return wrap(err, "user %d: end sessions", id)
	}
	return nil
}

// TouchUserLogin records a successful login.
func (d *DB) TouchUserLogin(ctx context.Context, id int64, t time.Time) error {
	return d.updateUser(ctx, id, "record login", `UPDATE user SET last_login = ? WHERE id = ?`, d.ms(t), id)
}

// DeleteUser removes a user with their sessions and tokens.
func (d *DB) DeleteUser(ctx context.Context, id int64) error {
	return d.updateUser(ctx, id, "delete", `DELETE FROM user WHERE id = ?`, id)
}

// Session is a logged-in browser or API client. ID is the opaque secret
// handed to the client; only its SHA-256 is stored, so ID is filled only
// by CreateSession.
type Session struct {
	ID       string
	UserID   int64
	CSRF     string
	Created  time.Time
	LastSeen time.Time
	Expires  time.Time
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret is how session ids and API tokens are stored: hex SHA-256.
// The secrets carry 256 random bits, so a fast hash is enough.
func HashSecret(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(s[:])
}

// CreateSession starts a session for a user lasting ttl and returns it
// with its secret ID and CSRF token.
func (d *DB) CreateSession(ctx context.Context, userID int64, ttl time.Duration) (Session, error) {
	if ttl <= 0 {
		return Session{}, fmt.Errorf("store: create session: %w: ttl must be positive", ErrInvalid)
	}
	id, err := randomToken(32)
	if err != nil {
		return Session{}, fmt.Errorf("store: create session: %w", err)
	}
	csrf, err := randomToken(32)
	if err != nil {
		return Session{}, fmt.Errorf("store: create session: %w", err)
	}
	now := fromMS(d.ms(d.now()))
	s := Session{ID: id, UserID: userID, CSRF: csrf, Created: now, LastSeen: now, Expires: now.Add(ttl)}
	_, err = d.exec(ctx, `INSERT INTO session(id_hash, user_id, csrf, created, last_seen, expires) VALUES (?, ?, ?, ?, ?, ?)`,
		HashSecret(id), userID, csrf, d.ms(s.Created), d.ms(s.LastSeen), d.ms(s.Expires))
	if err != nil {
		return Session{}, wrap(err, "create session for user %d", userID)
	}
	return s, nil
}

// SessionByID looks a session up by its secret; an expired session is
// ErrNotFound (and is removed).
func (d *DB) SessionByID(ctx context.Context, id string) (Session, error) {
	var s Session
	var c, l, e int64
	err := d.r.QueryRowContext(ctx, `SELECT user_id, csrf, created, last_seen, expires FROM session WHERE id_hash = ?`, HashSecret(id)).
		Scan(&s.UserID, &s.CSRF, &c, &l, &e)
	if err != nil {
		return Session{}, wrap(err, "session")
	}
	s.ID, s.Created, s.LastSeen, s.Expires = id, fromMS(c), fromMS(l), fromMS(e)
	if !d.now().Before(s.Expires) {
		d.exec(ctx, `DELETE FROM session WHERE id_hash = ?`, HashSecret(id))
		return Session{}, fmt.Errorf("store: session: expired: %w", ErrNotFound)
	}
	return s, nil
}

// TouchSession records activity and, when extend > 0, slides the expiry
// to now+extend.
func (d *DB) TouchSession(ctx context.Context, id string, extend time.Duration) error {
	now := d.now()
	var n int64
	var err error
	if extend > 0 {
		n, err = d.exec(ctx, `UPDATE session SET last_seen = ?, expires = ? WHERE id_hash = ?`, d.ms(now), d.ms(now.Add(extend)), HashSecret(id))
	} else {
		n, err = d.exec(ctx, `UPDATE session SET last_seen = ? WHERE id_hash = ?`, d.ms(now), HashSecret(id))
	}
	if err != nil {
		return wrap(err, "touch session")
	}
	if n == 0 {
		return fmt.Errorf("store: touch session: %w", ErrNotFound)
	}
	return nil
}

// DeleteSession ends a session (logout). Ending an unknown one is not an error.
func (d *DB) DeleteSession(ctx context.Context, id string) error {
	_, err := d.exec(ctx, `DELETE FROM session WHERE id_hash = ?`, HashSecret(id))
	return wrap(err, "delete session")
}

// DeleteExpiredSessions removes expired sessions and reports how many.
func (d *DB) DeleteExpiredSessions(ctx context.Context) (int64, error) {
	n, err := d.exec(ctx, `DELETE FROM session WHERE expires <= ?`, d.ms(d.now()))
	return n, wrap(err, "delete expired sessions")
}

// APIToken is a bearer token for scripts. Token (the secret) is filled
// only by CreateAPIToken; the database keeps its SHA-256.
type APIToken struct {
	ID       int64     `json:"id"`
	UserID   int64     `json:"userId"`
	Name     string    `json:"name"`
	Token    string    `json:"token,omitempty"`
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
	Expires  time.Time `json:"expires"` // zero: never
}

// CreateAPIToken issues a token for a user; expires zero means never.
func (d *DB) CreateAPIToken(ctx context.Context, userID int64, name string, expires time.Time) (APIToken, error) {
	secret, err := randomToken(32)
	if err != nil {
		return APIToken{}, fmt.Errorf("store: create token: %w", err)
	}
	secret = "fnx_" + secret
	now := fromMS(d.ms(d.now()))
	res, err := d.w.ExecContext(ctx, `INSERT INTO api_token(user_id, name, token_hash, created, expires) VALUES (?, ?, ?, ?, ?)`,
		userID, name, HashSecret(secret), d.ms(now), d.ms(expires))
	if err != nil {
		return APIToken{}, wrap(err, "create token for user %d", userID)
	}
	id, _ := res.LastInsertId()
	return APIToken{ID: id, UserID: userID, Name: name, Token: secret, Created: now, Expires: fromMS(d.ms(expires))}, nil
}

// APITokenBySecret looks a token up by its secret, records its use and
// returns it; an expired token is ErrNotFound.
func (d *DB) APITokenBySecret(ctx context.Context, secret string) (APIToken, error) {
	var t APIToken
	var c, l, e int64
	err := d.r.QueryRowContext(ctx, `SELECT id, user_id, name, created, last_used, expires FROM api_token WHERE token_hash = ?`, HashSecret(secret)).
		Scan(&t.ID, &t.UserID, &t.Name, &c, &l, &e)
	if err != nil {
		return APIToken{}, wrap(err, "api token")
	}
	t.Created, t.LastUsed, t.Expires = fromMS(c), fromMS(l), fromMS(e)
	now := d.now()
	if e != 0 && !now.Before(t.Expires) {
		return APIToken{}, fmt.Errorf("store: api token %d: expired: %w", t.ID, ErrNotFound)
	}
	if _, err := d.exec(ctx, `UPDATE api_token SET last_used = ? WHERE id = ?`, d.ms(now), t.ID); err != nil {
		return APIToken{}, wrap(err, "api token %d: record use", t.ID)
	}
	t.LastUsed = fromMS(d.ms(now))
	return t, nil
}

// APITokens lists a user's tokens (userID 0: everyone's), without secrets.
func (d *DB) APITokens(ctx context.Context, userID int64) ([]APIToken, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT id, user_id, name, created, last_used, expires FROM api_token WHERE ? = 0 OR user_id = ? ORDER BY id`, userID, userID)
	if err != nil {
		return nil, wrap(err, "list tokens")
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		var t APIToken
		var c, l, e int64
		if err := rows.Scan(&t.ID, &t.UserID, &t.Name, &c, &l, &e); err != nil {
			return nil, wrap(err, "list tokens")
		}
		t.Created, t.LastUsed, t.Expires = fromMS(c), fromMS(l), fromMS(e)
		out = append(out, t)
	}
	return out, wrap(rows.Err(), "list tokens")
}

// DeleteAPIToken revokes a token.
func (d *DB) DeleteAPIToken(ctx context.Context, id int64) error {
	n, err := d.exec(ctx, `DELETE FROM api_token WHERE id = ?`, id)
	if err != nil {
		return wrap(err, "delete token %d", id)
	}
	if n == 0 {
		return fmt.Errorf("store: delete token %d: %w", id, ErrNotFound)
	}
	return nil
}

var _ = sql.ErrNoRows
