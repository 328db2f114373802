package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// Group commit of the store's own writes (issue 15: a Register ran four
// small transactions, each with its fsync under synchronous=FULL, and
// the fsyncs were half its CPU and most of its time).
//
// While Run runs, tx and exec do not commit on their own: they hand their
// work to the ingestion writer, which runs it in its next transaction,
// after the readings gathered for it, each piece inside a SAVEPOINT, and
// returns once that transaction committed. Everything that arrived while
// the previous commit ran shares one commit and one fsync, so the cost per
// write falls as load rises, and the caller still returns only once its
// write is durable. One piece that fails is rolled back to its savepoint
// and fails alone. Without Run (command-line tools, tests, start-up) they
// commit directly, as before.

// writerKey marks contexts of the writer goroutine: a write made there
// (retention, compaction) must not wait for the writer itself.
type writerKey struct{}

func inWriter(ctx context.Context) bool { return ctx.Value(writerKey{}) != nil }

// writerCtx marks ctx as the writer goroutine's.
func writerCtx(ctx context.Context) context.Context { return context.WithValue(ctx, writerKey{}, true) }

// writeJob is one tx or exec waiting for the writer.
type writeJob struct {
	ctx  context.Context // the caller's values, without its cancellation
	fn   func(context.Context, *sql.Tx) error
	lazy bool // registration state (lazysync.go)
	// follow, when not nil, is written in the same transaction once fn
	// succeeded (withFollowUp).
	follow *batch
	done   chan error
	state  atomic.Int32 // jobQueued, then jobRunning (writer) or jobAbandoned (caller)
}

// The states of a writeJob. Its fn writes to its caller's variables, so a
// caller may leave only while the job has not started; once it runs the
// caller waits for its result.
const (
	jobQueued int32 = iota
	jobRunning
	jobAbandoned
)

// start reports whether the writer may run j (again, after a failed
// transaction): false once its caller left.
func (j *writeJob) start() bool {
	return j.state.CompareAndSwap(jobQueued, jobRunning) || j.state.Load() == jobRunning
}

// jobQueue holds the writes waiting for the next transaction. It never
// blocks: every job has a caller waiting for it, so the callers bound it.
type jobQueue struct {
	mu   sync.Mutex
	open bool // Run takes jobs
	jobs []*writeJob
	kick chan struct{}
}

func (q *jobQueue) init() { q.kick = make(chan struct{}, 1) }

// push queues j and wakes the writer; false when no writer takes jobs.
func (q *jobQueue) push(j *writeJob) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.open {
		return false
	}
	q.jobs = append(q.jobs, j)
	select {
	case q.kick <- struct{}{}:
	default:
	}
	return true
}

// take removes and returns every waiting job.
func (q *jobQueue) take() []*writeJob {
	q.mu.Lock()
	defer q.mu.Unlock()
	js := q.jobs
	q.jobs = nil
	return js
}

func (q *jobQueue) setOpen(open bool) {
	q.mu.Lock()
	q.open = open
	q.mu.Unlock()
}

// txLike is the transaction a tx function gets.
type txLike = *sql.Tx

// tx runs fn in a write transaction and returns once it committed. fn
// must use the ctx it is given, not its caller's: a cancelled statement
// interrupts the whole connection, and with it the shared transaction.
func (d *DB) tx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	if d.closed.Load() {
		return ErrClosed
	}
	d.stats.writes.Add(1)
	if inWriter(ctx) {
		return d.txDirect(ctx, fn)
	}
	j := &writeJob{ctx: context.WithoutCancel(ctx), fn: fn, lazy: isRegistrationWrite(ctx), done: make(chan error, 1)}
	if b, ok := followUpOf(ctx); ok {
		j.follow = &batch{Batch: b, accepted: d.now()}
	}
	if !d.jobs.push(j) {
		return d.txDirect(ctx, fn)
	}
	select {
	case err := <-j.done:
		return err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			return ctx.Err() // the writer will skip it
		}
		return <-j.done // running: fn may still write to our variables
	}
}

// txDirect commits fn in a transaction of its own. Its follow-up batch
// (withFollowUp), if any, goes through the ingestion queue after the
// commit.
func (d *DB) txDirect(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := d.noteWriteErr(tx.Commit()); err != nil {
		return err
	}
	if b, ok := followUpOf(ctx); ok {
		if err := d.Ingest(b); err != nil {
			d.log.Warn("follow-up of a write not stored", "endpoint", b.Endpoint, "event", b.Event, "err", err)
		}
	}
	return nil
}

// followUpKey carries the batch a write asks to have stored with it.
type followUpKey struct{}

// withFollowUp asks tx to store b (readings nobody was told are stored,
// such as a Register's event) in the transaction of its write, once the
// write succeeded: one commit instead of two, and the endpoint's pages
// written once (issue 15). Without the writer, b is queued after the
// commit.
func withFollowUp(ctx context.Context, b Batch) context.Context {
	return context.WithValue(ctx, followUpKey{}, b)
}

func followUpOf(ctx context.Context) (Batch, bool) {
	b, ok := ctx.Value(followUpKey{}).(Batch)
	return b, ok
}

// exec runs one write statement and reports the rows it changed.
func (d *DB) exec(ctx context.Context, q string, args ...any) (int64, error) {
	var n int64
	err := d.tx(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n, err
}

// errJobGone is what a job whose caller left before it ran gets (nobody
// reads it).
var errJobGone = errors.New("store: write abandoned by its caller")

// runJobs runs each job inside tx under a savepoint. It returns the
// jobs' own errors, and an error only when tx itself can go no further.
func (d *DB) runJobs(ctx context.Context, tx *sql.Tx, jobs []*writeJob) ([]error, error) {
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		if !j.start() {
			errs[i] = errJobGone
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT job`); err != nil {
			return nil, err
		}
		jctx := writerCtx(j.ctx)
		if errs[i] = j.fn(jctx, tx); errs[i] != nil {
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO job`); err != nil {
				return nil, fmt.Errorf("roll back a failed write (%v): %w", errs[i], err)
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE job`); err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// finishJobs hands every job its result: its own error, or err when the
// transaction failed.
func finishJobs(jobs []*writeJob, errs []error, err error) {
	for i, j := range jobs {
		e := err
		if e == nil && errs != nil {
			e = errs[i]
		}
		j.done <- e
	}
}

// retryJobs commits the jobs of a failed transaction one by one, each in
// a transaction of its own, so that one bad write does not fail others.
func (d *DB) retryJobs(ctx context.Context, jobs []*writeJob) {
	for _, j := range jobs {
		if !j.start() {
			j.done <- errJobGone
			continue
		}
		j.done <- d.txDirect(writerCtx(j.ctx), j.fn)
	}
}
