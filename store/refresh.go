package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// regCache remembers the registration fields last written for each
// endpoint, so that an Update changing nothing writes nothing (issue 15).
// Every other write to those fields of an endpoint row (delete, expiry,
// offline, touch, security mode, credentials) bumps gen, which
// invalidates all entries: such an endpoint is written again on its next
// Update. Writes of fields an Update leaves alone (firmware version,
// pending) do not.
type regCache struct {
	gen  atomic.Uint64
	mu   sync.Mutex
	rows map[string]regEntry
	// refresh is the Update statement, prepared once on the writer.
	once    sync.Once
	refresh *sql.Stmt
	err     error
}

type regEntry struct {
	e   regRow
	gen uint64
}

// regRow is what RefreshEndpoint writes, LastSeen aside, times in
// milliseconds as stored.
type regRow struct {
	Name, RegistrationID, Binding, LwM2MVersion, SecurityMode, ObjectLinks, Address string
	Online, QueueMode                                                               bool
	Lifetime, RegisteredAt, DeregisteredAt                                          int64
}

// invalidate forgets every remembered row (another write changed one).
// It runs after that write: a RefreshEndpoint that read gen before it
// then remembers under a stale gen, and one that read it after wrote
// after it, so the cache never claims a row the database no longer has.
func (c *regCache) invalidate() { c.gen.Add(1) }

// remember records the registration fields written for e.Name while gen
// was g (the fields RefreshEndpoint writes; the others are cleared).
func (c *regCache) remember(e Endpoint, g uint64) {
	r := regFields(e)
	c.mu.Lock()
	if c.rows == nil {
		c.rows = map[string]regEntry{}
	}
	c.rows[r.Name] = regEntry{e: r, gen: g}
	c.mu.Unlock()
}

// same reports whether e's registration fields are those last written.
func (c *regCache) same(e Endpoint) bool {
	w := regFields(e)
	c.mu.Lock()
	r, ok := c.rows[w.Name]
	c.mu.Unlock()
	if !ok || r.gen != c.gen.Load() {
		return false
	}
	if w.SecurityMode == "" { // "keep the stored one"
		w.SecurityMode = r.e.SecurityMode
	}
	return r.e == w
}

// keeps reports whether writing e leaves the online flag, security mode
// and firmware version of its row as they are: the row is the one last
// written, e is online as it was, brings no security mode other than the
// row's, and no firmware version.
func (c *regCache) keeps(e Endpoint) bool {
	c.mu.Lock()
	r, ok := c.rows[e.Name]
	c.mu.Unlock()
	return ok && r.gen == c.gen.Load() && r.e.Online == e.Online && e.FirmwareVersion == "" &&
		(e.SecurityMode == "" || e.SecurityMode == r.e.SecurityMode)
}

// regFields keeps the fields an Update may change, LastSeen aside.
func regFields(e Endpoint) regRow {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return regRow{Name: e.Name, RegistrationID: e.RegistrationID, Online: e.Online, Lifetime: e.Lifetime,
		Binding: e.Binding, LwM2MVersion: e.LwM2MVersion, QueueMode: e.QueueMode, SecurityMode: e.SecurityMode,
		ObjectLinks: e.ObjectLinks, Address: e.Address, RegisteredAt: ms(e.RegisteredAt), DeregisteredAt: ms(e.DeregisteredAt)}
}

const refreshSQL = `UPDATE endpoint SET registration_id = ?, online = ?, last_seen = MAX(last_seen, ?),
	lifetime = ?, binding = ?, lwm2m_version = ?, queue_mode = ?,
	security_mode = CASE WHEN ? = '' THEN security_mode ELSE ? END,
	object_links = ?, address = ?, registered_at = ?, deregistered_at = ? WHERE name = ?`

// RefreshEndpoint records an Update (Core §6.2.2) of a registered
// endpoint: the registration fields of UpsertEndpoint, on an existing row
// only — ErrNotFound when the endpoint is gone (deleted while registered;
// it must register again). When the fields are those last written, it
// runs no statement at all: last_seen then follows from the Update's
// registration event or Seen, which the ingestion writer commits.
// e.Pending and e.FirmwareVersion are ignored.
func (d *DB) RefreshEndpoint(ctx context.Context, e Endpoint) error {
	if d.regs.same(e) {
		return nil
	}
	st, err := d.refreshStmt(ctx)
	if err != nil {
		return wrap(err, "refresh endpoint %q", e.Name)
	}
	if d.closed.Load() {
		return ErrClosed
	}
	g := d.regs.gen.Load()
	d.stats.endpointWrites.Add(1)
	res, err := st.ExecContext(ctx, e.RegistrationID, b2i(e.Online), d.ms(e.LastSeen), e.Lifetime, e.Binding,
		e.LwM2MVersion, b2i(e.QueueMode), e.SecurityMode, e.SecurityMode, e.ObjectLinks, e.Address,
		d.ms(e.RegisteredAt), d.ms(e.DeregisteredAt), e.Name)
	if err != nil {
		return wrap(err, "refresh endpoint %q", e.Name)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: refresh endpoint %q: %w", e.Name, ErrNotFound)
	}
	d.regs.remember(e, g)
	return nil
}

func (d *DB) refreshStmt(ctx context.Context) (*sql.Stmt, error) {
	c := &d.regs
	c.once.Do(func() { c.refresh, c.err = d.w.PrepareContext(ctx, refreshSQL) })
	return c.refresh, c.err
}
