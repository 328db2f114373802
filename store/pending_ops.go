package store

import (
	"context"
	"sync"
)

// pendingOps is the set of endpoints that may have queued operations,
// loaded at Open and kept up to date by every change that queues one, so
// that the dispatcher asks the database only for those (issue 15: no
// per-Update query when nothing is pending). It may hold an endpoint with
// nothing queued (cleared by the next QueuedOperations), never miss one.
type pendingOps struct {
	mu   sync.Mutex
	eps  map[string]uint64 // endpoint → the mark's generation
	next uint64
}

func (p *pendingOps) mark(ep string) {
	p.mu.Lock()
	if p.eps == nil {
		p.eps = map[string]uint64{}
	}
	p.next++
	p.eps[ep] = p.next
	p.mu.Unlock()
}

func (p *pendingOps) get(ep string) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.eps[ep]
	return g, ok
}

// clear drops ep unless it was marked again since generation g.
func (p *pendingOps) clear(ep string, g uint64) {
	p.mu.Lock()
	if p.eps[ep] == g {
		delete(p.eps, ep)
	}
	p.mu.Unlock()
}

// loadPending fills the set from the database.
func (d *DB) loadPending(ctx context.Context) error {
	rows, err := d.w.QueryContext(ctx, `SELECT DISTINCT e.name FROM operation o JOIN endpoint e ON e.id = o.endpoint_id WHERE o.status = 'queued'`)
	if err != nil {
		return wrap(err, "load queued operations")
	}
	defer rows.Close()
	for rows.Next() {
		var ep string
		if err := rows.Scan(&ep); err != nil {
			return wrap(err, "load queued operations")
		}
		d.pend.mark(ep)
	}
	return wrap(rows.Err(), "load queued operations")
}

// MayHaveQueued reports whether the endpoint may have queued operations;
// false means it has none, and asking QueuedOperations would run no
// query either.
func (d *DB) MayHaveQueued(endpoint string) bool {
	_, ok := d.pend.get(endpoint)
	return ok
}

// QueuedOperations lists up to limit of an endpoint's queued operations,
// oldest first (the dispatcher's order). For an endpoint with nothing
// queued it runs no query.
func (d *DB) QueuedOperations(ctx context.Context, endpoint string, limit int) ([]Operation, error) {
	g, ok := d.pend.get(endpoint)
	if !ok {
		return nil, nil
	}
	ops, err := d.Operations(ctx, OperationQuery{Endpoint: endpoint, Status: StatusQueued, Oldest: true, Limit: limit})
	if err == nil && len(ops) == 0 {
		d.pend.clear(endpoint, g)
	}
	return ops, err
}
