package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Operation states: queued → sending → confirmed | failed; a failed
// attempt goes back to queued until the attempts run out.
const (
	StatusQueued    = "queued"
	StatusSending   = "sending"
	StatusConfirmed = "confirmed"
	StatusFailed    = "failed"
)

// DefaultMaxAttempts is the seed's rule: give up after 3 attempts.
const DefaultMaxAttempts = 3

// Operation is a device-management request to one endpoint (the seed's
// EndpointOperation), persisted so a restart loses nothing.
type Operation struct {
	ID       int64  `json:"id"`
	Endpoint string `json:"endpoint"`
	// Type: read, write, execute, observe, cancel-observe, discover,
	// write-attributes, create, delete, read-composite, …
	Type  string   `json:"type"`
	Paths []string `json:"paths"`
	// Payload is the request's value/arguments/attributes as JSON.
	Payload  json.RawMessage `json:"payload,omitempty"`
	Format   string          `json:"format,omitempty"`
	Status   string          `json:"status"`
	Attempts int             `json:"attempts"`
	Created  time.Time       `json:"created"`
	Updated  time.Time       `json:"updated"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// Final reports whether the operation has reached confirmed or failed.
func (o Operation) Final() bool { return o.Status == StatusConfirmed || o.Status == StatusFailed }

const opCols = `o.id, e.name, o.type, o.paths, o.payload, o.format, o.status, o.attempts, o.created, o.updated, o.result, o.error`

func scanOp(row interface{ Scan(...any) error }) (Operation, error) {
	var o Operation
	var paths, payload, result string
	var c, u int64
	if err := row.Scan(&o.ID, &o.Endpoint, &o.Type, &paths, &payload, &o.Format, &o.Status, &o.Attempts, &c, &u, &result, &o.Error); err != nil {
		return o, err
	}
	o.Created, o.Updated = fromMS(c), fromMS(u)
	json.Unmarshal([]byte(paths), &o.Paths)
	if payload != "null" && payload != "" {
		o.Payload = json.RawMessage(payload)
	}
	if result != "null" && result != "" {
		o.Result = json.RawMessage(result)
	}
	return o, nil
}

func rawOrNull(r json.RawMessage) (string, error) {
	if len(r) == 0 {
		return "null", nil
	}
	if !json.Valid(r) {
		return "", fmt.Errorf("%w: not valid JSON", ErrInvalid)
	}
	return string(r), nil
}

// CreateOperation queues an operation for an existing endpoint and
// returns it with its id; ErrNotFound when the endpoint is unknown.
func (d *DB) CreateOperation(ctx context.Context, o Operation) (Operation, error) {
	if strings.TrimSpace(o.Type) == "" {
		return Operation{}, fmt.Errorf("store: create operation: %w: empty type", ErrInvalid)
	}
	if o.Paths == nil {
		o.Paths = []string{}
	}
	paths, _ := json.Marshal(o.Paths)
	payload, err := rawOrNull(o.Payload)
	if err != nil {
		return Operation{}, fmt.Errorf("store: create operation: payload: %w", err)
	}
	now := d.ms(d.now())
	var id int64
	err = d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var ep int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, o.Endpoint).Scan(&ep); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO operation(endpoint_id, type, paths, payload, format, status, created, updated)
			VALUES (?, ?, ?, ?, ?, 'queued', ?, ?)`, ep, o.Type, string(paths), payload, o.Format, now, now)
		if err != nil {
			return err
		}
		id, _ = res.LastInsertId()
		return nil
	})
	if err != nil {
		return Operation{}, wrap(err, "create operation for %q", o.Endpoint)
	}
	d.pend.mark(o.Endpoint)
	return d.opFrom(ctx, d.w, id)
}

func (d *DB) opFrom(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id int64) (Operation, error) {
	o, err := scanOp(q.QueryRowContext(ctx, `SELECT `+opCols+` FROM operation o JOIN endpoint e ON e.id = o.endpoint_id WHERE o.id = ?`, id))
	return o, wrap(err, "operation %d", id)
}

// Operation returns an operation by id.
func (d *DB) Operation(ctx context.Context, id int64) (Operation, error) {
	return d.opFrom(ctx, d.r, id)
}

// OperationQuery filters Operations. Zero fields do not filter.
type OperationQuery struct {
	Endpoint string
	Status   string
	// Oldest lists oldest first (the dispatcher's order); default newest
	// first (the history's order).
	Oldest   bool
	BeforeID int64 // page: ids below this (newest-first order only)
	Limit    int   // default 100, at most 1000
}

// Operations lists operations by endpoint and status.
func (d *DB) Operations(ctx context.Context, q OperationQuery) ([]Operation, error) {
	var where []string
	var args []any
	if q.Endpoint != "" {
		where = append(where, `o.endpoint_id = (SELECT id FROM endpoint WHERE name = ?)`)
		args = append(args, q.Endpoint)
	}
	if q.Status != "" {
		where = append(where, `o.status = ?`)
		args = append(args, q.Status)
	}
	if q.BeforeID > 0 && !q.Oldest {
		where = append(where, `o.id < ?`)
		args = append(args, q.BeforeID)
	}
	w := ""
	if len(where) > 0 {
		w = " WHERE " + strings.Join(where, " AND ")
	}
	order := " ORDER BY o.id DESC"
	if q.Oldest {
		order = " ORDER BY o.id"
	}
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	d.stats.opQueries.Add(1)
	rows, err := d.r.QueryContext(ctx, `SELECT `+opCols+` FROM operation o JOIN endpoint e ON e.id = o.endpoint_id`+w+order+` LIMIT ?`, append(args, q.Limit)...)
	if err != nil {
		return nil, wrap(err, "list operations")
	}
	defer rows.Close()
	out := []Operation{}
	for rows.Next() {
		o, err := scanOp(rows)
		if err != nil {
			return nil, wrap(err, "list operations")
		}
		out = append(out, o)
	}
	return out, wrap(rows.Err(), "list operations")
}

// transition moves an operation from one of the given states with a
// single conditional UPDATE, so two dispatchers cannot both claim it.
// ErrNotFound when the id is unknown, ErrConflict when its state does not
// allow the move.
func (d *DB) transition(ctx context.Context, id int64, what string, from []string, set string, args ...any) (Operation, error) {
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(from)), ", ")
	all := append(append([]any{}, args...), d.ms(d.now()), id)
	for _, f := range from {
		all = append(all, f)
	}
	n, err := d.exec(ctx, `UPDATE operation SET `+set+`, updated = ? WHERE id = ? AND status IN (`+ph+`)`, all...)
	if err != nil {
		return Operation{}, wrap(err, "operation %d: %s", id, what)
	}
	o, err := d.opFrom(ctx, d.w, id)
	if err != nil {
		return Operation{}, err
	}
	if o.Status == StatusQueued {
		d.pend.mark(o.Endpoint)
	}
	if n == 0 {
		return o, fmt.Errorf("store: operation %d: %s: %w: status is %s", id, what, ErrConflict, o.Status)
	}
	return o, nil
}

// ClaimOperation marks a queued operation sending and counts the attempt.
func (d *DB) ClaimOperation(ctx context.Context, id int64) (Operation, error) {
	return d.transition(ctx, id, "claim", []string{StatusQueued}, `status = 'sending', attempts = attempts + 1, error = ''`)
}

// ConfirmOperation records a sending operation's success and result.
func (d *DB) ConfirmOperation(ctx context.Context, id int64, result json.RawMessage) (Operation, error) {
	r, err := rawOrNull(result)
	if err != nil {
		return Operation{}, fmt.Errorf("store: operation %d: confirm: result: %w", id, err)
	}
	return d.transition(ctx, id, "confirm", []string{StatusSending}, `status = 'confirmed', result = ?, error = ''`, r)
}

// FailOperation ends a queued or sending operation as failed for good
// (an error response that retrying cannot fix, or a cancel).
func (d *DB) FailOperation(ctx context.Context, id int64, errMsg string) (Operation, error) {
	return d.transition(ctx, id, "fail", []string{StatusQueued, StatusSending}, `status = 'failed', error = ?`, errMsg)
}

// RequeueOperation puts a sending operation back in the queue, keeping
// its attempt count (the device went away before answering).
func (d *DB) RequeueOperation(ctx context.Context, id int64, errMsg string) (Operation, error) {
	return d.transition(ctx, id, "requeue", []string{StatusSending}, `status = 'queued', error = ?`, errMsg)
}

// RetryOperation applies the attempt rule to a sending operation whose
// attempt failed: back to queued while attempts < maxAttempts (0 means
// DefaultMaxAttempts), failed otherwise.
func (d *DB) RetryOperation(ctx context.Context, id int64, errMsg string, maxAttempts int) (Operation, error) {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	return d.transition(ctx, id, "retry", []string{StatusSending},
		`status = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END, error = ?`, maxAttempts, errMsg)
}

// RequeueSending returns every sending operation to the queue with its
// attempts kept; Open does this, since after a restart nothing is in
// flight. It reports how many moved.
func (d *DB) RequeueSending(ctx context.Context) (int64, error) {
	n, err := d.exec(ctx, `UPDATE operation SET status = 'queued', updated = ? WHERE status = 'sending'`, d.ms(d.now()))
	if err != nil {
		return n, wrap(err, "requeue sending operations")
	}
	if n > 0 {
		if err := d.loadPending(ctx); err != nil {
			return n, err
		}
	}
	return n, nil
}

// DeleteOperationsBefore removes final operations last updated before t.
func (d *DB) DeleteOperationsBefore(ctx context.Context, t time.Time) (int64, error) {
	n, err := d.exec(ctx, `DELETE FROM operation WHERE status IN ('confirmed', 'failed') AND updated < ?`, d.ms(t))
	return n, wrap(err, "delete old operations")
}
