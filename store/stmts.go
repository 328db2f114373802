package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync/atomic"
)

// The writer runs the same few statements in every commit. Preparing one
// costs more than running it (issue 15 found a fifth of an Update's CPU in
// re-preparing), so they are prepared once, on the writer, at open: the
// multi-row INSERTs in power-of-two sizes up to insertRows (a batch of n
// rows goes as the binary digits of n), the single-row ones, and the small
// queries of the commit. A transaction uses them through tx.StmtContext,
// which reuses what the writer's one connection has prepared.
//
// They cannot be prepared lazily: the writer has a single connection, and
// preparing on the pool while a transaction holds it would wait forever.

// Heads of the multi-row INSERTs the writer batches (bulk).
const (
	insertEvent = `INSERT INTO event(id, endpoint_id, t, kind, detail) VALUES `
	insertLink  = `INSERT OR IGNORE INTO event_resource(event_id, series_id, t, value) VALUES `
	insertLog   = `INSERT INTO device_log(endpoint_id, t, received, class, severity, line) VALUES `
	insertValue = `INSERT INTO resource(id, series_id, t, type, num, txt, blb) VALUES `

	queryMaxEvent  = `SELECT COALESCE(MAX(id), 0) FROM event`
	updateLastSeen = `UPDATE endpoint SET last_seen = ? WHERE id = ? AND last_seen < ?`
)

var bulkHeads = map[string]int{insertEvent: 5, insertLink: 4, insertLog: 6, insertValue: 7}

// bulkSQL[head][i] is head with 1<<i rows.
var bulkSQL = func() map[string][]string {
	m := map[string][]string{}
	for head, cols := range bulkHeads {
		for n := 1; n <= insertRows; n *= 2 {
			m[head] = append(m[head], rowsSQL(head, cols, n))
		}
	}
	return m
}()

// chunk is the largest power of two not above n (n > 0), and its log2.
func chunk(n int) (size, log int) {
	size = 1
	for size*2 <= n && size*2 <= insertRows {
		size *= 2
		log++
	}
	return size, log
}

// rows returns the INSERT of head with 1<<log rows for tx.
func (ws writerStmts) rows(ctx context.Context, tx *sql.Tx, head string, log int) (*sql.Stmt, error) {
	return ws.in(ctx, tx, bulkSQL[head][log])
}

// rowsSQL is head followed by n placeholder rows of cols columns.
func rowsSQL(head string, cols, n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return head + strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// writerStmts are the writer's statements prepared at open, by SQL text.
type writerStmts struct {
	m map[string]*sql.Stmt
	// adhoc counts statements a transaction had to prepare for itself
	// (a commit path that is not in the list); the tests keep it at 0.
	adhoc *atomic.Int64
}

func prepareWriter(ctx context.Context, w *sql.DB) (writerStmts, error) {
	ws := writerStmts{m: map[string]*sql.Stmt{}, adhoc: new(atomic.Int64)}
	add := func(q string) error {
		st, err := w.PrepareContext(ctx, q)
		if err != nil {
			ws.close()
			return fmt.Errorf("store: prepare %.60q: %w", q, err)
		}
		ws.m[q] = st
		return nil
	}
	for _, qs := range bulkSQL {
		for _, q := range qs {
			if err := add(q); err != nil {
				return writerStmts{}, err
			}
		}
	}
	for _, q := range []string{queryMaxEvent, updateLastSeen} {
		if err := add(q); err != nil {
			return writerStmts{}, err
		}
	}
	return ws, nil
}

// in returns q's statement for tx: the prepared one, or one prepared for
// tx alone if q is not among them (closed with tx).
func (ws writerStmts) in(ctx context.Context, tx *sql.Tx, q string) (*sql.Stmt, error) {
	if st := ws.m[q]; st != nil {
		return tx.StmtContext(ctx, st), nil
	}
	ws.adhoc.Add(1)
	return tx.PrepareContext(ctx, q)
}

func (ws writerStmts) close() {
	for _, st := range ws.m {
		st.Close()
	}
}
