package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// Batch is one notification or Send payload from one endpoint.
type Batch struct {
	Endpoint string
	// Received is when the server got the payload; readings without a
	// timestamp of their own (Record.Time zero) take it.
	Received time.Time
	Records  []lwm2m.Record
	// Event, when set, records one Event of this kind (e.g. "composite",
	// "registered") that links every reading of the batch.
	Event string
	// EventDetail is free text stored with the event.
	EventDetail string
	// Stale marks the readings of a notification that arrived out of
	// order: older than one already delivered for the same observation
	// (RFC 7641 §3.4). They are history, never the latest value; see
	// staleTime for how those without a time of their own are stamped.
	Stale bool
	// Seen marks a batch without readings or event that only says the
	// endpoint was heard from at Received (see DB.Seen).
	Seen bool
}

type batch struct {
	Batch
	accepted time.Time  // by the DB's clock: the default reception time
	queued   time.Time  // wall clock, for the ack-to-commit latency
	done     chan error // Flush marker: no records, closed after commit
	then     func(error)
}

// Stats are the ingestion counters for /metrics.
type Stats struct {
	Accepted         uint64        // batches accepted by the queue
	AcceptedSeen     uint64        // of them, batches that only said a device was heard from (Seen)
	AcceptedRecords  uint64        // readings accepted
	Committed        uint64        // batches committed
	CommittedRecords uint64        // readings committed
	Refused          uint64        // batches refused with ErrQueueFull
	Failed           uint64        // batches dropped after the writer gave up on them
	Transactions     uint64        // write transactions of the ingestion writer
	MaxBatchRecords  uint64        // the largest transaction, in readings
	LastCommit       time.Duration // latency of the last commit
	MaxCommit        time.Duration // the slowest commit so far
	MaxAckToCommit   time.Duration // the longest a reading waited from Ingest to its commit
	TotalCommit      time.Duration // sum of commit latencies
	QueueLen         int           // batches waiting now
	QueueCap         int
	SubscriberDrops  uint64        // notifications not delivered to slow subscribers
	Compactions      uint64        // compaction steps
	MaxCompactStep   time.Duration // the longest compaction transaction (it holds the write lock)
	CompactErrors    uint64        // failed compaction steps (retried later)
	CompactedRecords uint64
	RetentionDeleted uint64 // chunks and rows removed by retention
	TailRecords      int    // uncompacted readings held in memory
	WALBytes         int64  // size of the write-ahead log file now
	WALTruncates     uint64 // times readers kept the WAL from restarting until the hard limit
	EndpointWrites   uint64 // registration writes (UpsertEndpoint, RefreshEndpoint that changed something)
	OperationQueries uint64 // queries listing operations
	// CredentialQueries counts credential lookups that went to the
	// database; the others were answered from memory (credcache.go).
	CredentialQueries uint64
	// Writes counts the synchronous writes callers waited for (each one
	// job of the writer's group commit, group.go).
	Writes uint64
	// WriterPrepares counts statements a write transaction had to prepare
	// for itself instead of using the writer's (stmts.go): 0 when every
	// commit path runs prepared statements.
	WriterPrepares int64
	// LazyCommits counts transactions committed without an fsync of
	// their own (registration state, readings nobody was told are stored,
	// compaction's deletes); WALSyncs the fsyncs that made them durable
	// later, when no full commit did first (lazysync.go).
	LazyCommits, WALSyncs uint64
}

type stats struct {
	accepted, acceptedRecords, committed, committedRecords atomic.Uint64
	acceptedSeen                                           atomic.Uint64
	refused, failed, transactions, maxBatch                atomic.Uint64
	lastCommit, maxCommit, totalCommit, maxAck             atomic.Int64
	subDrops, compactions, compacted, retentionDeleted     atomic.Uint64
	maxCompact                                             atomic.Int64
	compactErrors                                          atomic.Uint64
	walTruncates                                           atomic.Uint64
	endpointWrites, opQueries                              atomic.Uint64
	credQueries, writes                                    atomic.Uint64
	lazyCommits, walSyncs                                  atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (d *DB) Stats() Stats {
	s := &d.stats
	d.tel.view.RLock()
	tail := d.tel.nTail
	d.tel.view.RUnlock()
	return Stats{
		Accepted: s.accepted.Load(), AcceptedSeen: s.acceptedSeen.Load(), AcceptedRecords: s.acceptedRecords.Load(),
		Committed: s.committed.Load(), CommittedRecords: s.committedRecords.Load(),
		Refused: s.refused.Load(), Failed: s.failed.Load(), Transactions: s.transactions.Load(),
		MaxBatchRecords: s.maxBatch.Load(), LastCommit: time.Duration(s.lastCommit.Load()),
		MaxCommit: time.Duration(s.maxCommit.Load()), TotalCommit: time.Duration(s.totalCommit.Load()),
		MaxAckToCommit: time.Duration(s.maxAck.Load()),
		QueueLen:       len(d.queue), QueueCap: cap(d.queue), SubscriberDrops: s.subDrops.Load(),
		Compactions: s.compactions.Load(), CompactedRecords: s.compacted.Load(), MaxCompactStep: time.Duration(s.maxCompact.Load()), CompactErrors: s.compactErrors.Load(),
		RetentionDeleted: s.retentionDeleted.Load(), TailRecords: tail,
		WALBytes: d.walBytes(), WALTruncates: s.walTruncates.Load(),
		EndpointWrites: s.endpointWrites.Load(), OperationQueries: s.opQueries.Load(),
		CredentialQueries: s.credQueries.Load(), Writes: s.writes.Load(),
		WriterPrepares: d.wst.adhoc.Load(),
		LazyCommits:    s.lazyCommits.Load(), WALSyncs: s.walSyncs.Load(),
	}
}

// Ingest hands a batch to the writer without blocking. Once it returns
// nil the readings are committed within FlushInterval (while Run runs, or
// by Close). It returns an error wrapping ErrQueueFull when the queue is
// full (answer 5.03 so the device retries) and ErrClosed after Close.
// Ingest is for values nobody was told are stored yet; what the device
// is acknowledged for goes through IngestThen.
func (d *DB) Ingest(b Batch) error { return d.enqueue(b, nil) }

// IngestThen is Ingest for readings whose acknowledgement must wait for
// their commit (issue 13: acknowledged means stored). When it returns nil,
// committed is called exactly once, after the transaction holding the
// batch committed (nil) or after the writer gave up on it (the error);
// everything that arrived while the previous commit ran goes into the
// next transaction (group commit). committed runs on a goroutine the
// writer starts per transaction: it must not block for
// long (send an acknowledgement, signal a channel); the callbacks of one
// transaction run in queue order. Close waits for them. When IngestThen
// returns an error, committed is never called.
func (d *DB) IngestThen(b Batch, committed func(error)) error {
	if committed == nil {
		return fmt.Errorf("store: ingest: %w: no commit callback", ErrInvalid)
	}
	return d.enqueue(b, committed)
}

func (d *DB) enqueue(b Batch, then func(error)) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	if err := d.refuseIfFull(b.Endpoint); err != nil {
		return err
	}
	d.ingestMu.RLock()
	defer d.ingestMu.RUnlock()
	if d.closed.Load() {
		return fmt.Errorf("store: ingest from %q: %w", b.Endpoint, ErrClosed)
	}
	// Bound the queue in readings too, so that what it accepts can be
	// committed within the flush interval. A batch whose device waits for
	// the commit (IngestThen) is refused only at twice that: its device
	// retransmits after its own ACK timeout (2 s by RFC 7252 §4.8's default)
	// anyway, so a pause of the writer shorter than that costs it only
	// time, where a refusal costs a retransmission (issue 15: a pause of
	// over a second made 0.007 % of a 10,000-device fleet's notifications
	// refused).
	q, limit := d.queuedRecords.Load(), int64(d.cfg.QueueRecords)
	if then != nil {
		limit *= 2
	}
	if q > 0 && q+int64(len(b.Records)) > limit {
		d.stats.refused.Add(1)
		return fmt.Errorf("store: ingest from %q: %w (%d readings waiting)", b.Endpoint, ErrQueueFull, q)
	}
	// And by the writer's progress, for readings acknowledged before
	// their commit (Ingest): when one piece of its work (a commit, a
	// compaction step, a retention pass) has run for half the flush
	// interval while readings wait (a slow disk, a long transaction), new
	// readings would likely miss the interval; refusing lets the device
	// retry instead. A batch with a commit callback (IngestThen) is not
	// refused for this: its device is answered only after the commit
	// anyway, so waiting in the bounded queue costs it nothing, where a
	// refusal would cost it a retransmission (issue 15: a compaction step
	// made 2 % of a 1000-device fleet's notifications refused). A writer
	// waiting for work is not busy, however long since its last commit:
	// a burst of retransmissions after a quiet spell must not be refused.
	if since := d.busySince.Load(); q > 0 && since != 0 && then == nil {
		if busy := time.Duration(time.Now().UnixNano() - since); busy > d.cfg.FlushInterval/2 {
			d.stats.refused.Add(1)
			return fmt.Errorf("store: ingest from %q: %w (writer busy for %v)", b.Endpoint, ErrQueueFull, busy.Round(time.Millisecond))
		}
	}
	select {
	case d.queue <- &batch{Batch: b, accepted: d.now(), queued: time.Now(), then: then}:
		d.queuedRecords.Add(int64(len(b.Records)))
		d.stats.accepted.Add(1)
		d.stats.acceptedRecords.Add(uint64(len(b.Records)))
		if b.Seen {
			d.stats.acceptedSeen.Add(1)
		}
		return nil
	default:
		d.stats.refused.Add(1)
		return fmt.Errorf("store: ingest from %q: %w (%d batches waiting)", b.Endpoint, ErrQueueFull, cap(d.queue))
	}
}

// IngestWait is Ingest that waits for room in the queue until ctx ends;
// for events that must not be refused (registrations).
func (d *DB) IngestWait(ctx context.Context, b Batch) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	for {
		err := d.Ingest(b)
		if err == nil || !isQueueFull(err) {
			if err == nil {
				return nil
			}
			return err
		}
		// Undo the refusal count: this caller waits instead of refusing.
		d.stats.refused.Add(^uint64(0))
		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			d.stats.refused.Add(1)
			return fmt.Errorf("store: ingest from %q: %w: %w", b.Endpoint, ErrQueueFull, ctx.Err())
		case <-t.C:
		}
	}
}

func isQueueFull(err error) bool { return errors.Is(err, ErrQueueFull) }

func checkBatch(b Batch) error {
	if b.Endpoint == "" {
		return fmt.Errorf("store: ingest: %w: empty endpoint", ErrInvalid)
	}
	if b.Seen && (len(b.Records) > 0 || b.Event != "") {
		return fmt.Errorf("store: ingest from %q: %w: a Seen batch carries no readings or event", b.Endpoint, ErrInvalid)
	}
	for _, r := range b.Records {
		if r.Path.Len() < 3 {
			return fmt.Errorf("store: ingest from %q: %w: %s is not a resource path", b.Endpoint, ErrInvalid, r.Path)
		}
	}
	return nil
}

// Flush waits until every batch accepted before the call is committed.
// It needs Run to be running.
func (d *DB) Flush(ctx context.Context) error {
	done := make(chan error, 1)
	d.ingestMu.RLock()
	if d.closed.Load() {
		d.ingestMu.RUnlock()
		return fmt.Errorf("store: flush: %w", ErrClosed)
	}
	select {
	case d.queue <- &batch{done: done}:
	case <-ctx.Done():
		d.ingestMu.RUnlock()
		return fmt.Errorf("store: flush: %w", ctx.Err())
	}
	d.ingestMu.RUnlock()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("store: flush: %w", ctx.Err())
	}
}

// Run is the ingestion writer: it commits queued batches, compacts
// readings into chunks and roll-ups, and applies retention, until ctx
// ends or Close is called. On the way out it commits what the queue
// still holds. Only one Run may be active.
func (d *DB) Run(ctx context.Context) error {
	d.runMu.Lock()
	if d.running || d.closed.Load() {
		d.runMu.Unlock()
		return fmt.Errorf("store: run: %w: already running or closed", ErrInvalid)
	}
	d.running = true
	d.runDone = make(chan struct{})
	d.runMu.Unlock()
	d.jobs.setOpen(true)
	defer func() {
		d.busySince.Store(0)
		d.runMu.Lock()
		d.running = false
		close(d.runDone)
		d.runMu.Unlock()
	}()

	compact := time.NewTicker(d.cfg.CompactInterval)
	defer compact.Stop()
	retention := time.NewTicker(d.cfg.RetentionInterval)
	defer retention.Stop()
	ckCtx, stopCk := context.WithCancel(ctx)
	ckDone := make(chan struct{})
	go func() {
		defer close(ckDone)
		d.checkpointLoop(ckCtx, walSyncEvery)
	}()
	defer func() {
		stopCk()
		<-ckDone
	}()
	bg := writerCtx(context.WithoutCancel(ctx))
	for {
		select {
		case <-ctx.Done():
			return d.stopWriter(bg)
		case <-d.closing:
			return d.stopWriter(bg)
		case <-d.jobs.kick:
			d.working()
			// The goroutine that queued the job woke the writer to run
			// next; let the others already runnable queue theirs first.
			runtime.Gosched()
			d.writeFrom(bg, nil)
			d.walGuard(bg)
		case b := <-d.queue:
			d.working()
			d.writeFrom(bg, b)
			if d.rawRows.Load() >= int64(d.cfg.CompactRows) {
				d.working()
				d.compactStep(bg, false)
			}
			d.walGuard(bg)
		case <-compact.C:
			// Compact in bounded steps, committing waiting readings
			// between them so ingestion latency stays low.
			for {
				d.working()
				more := d.compactStep(bg, true)
				d.working()
				d.writeWaiting(bg)
				if !more || ctx.Err() != nil {
					break
				}
			}
			d.walGuard(bg)
		case <-retention.C:
			d.working()
			d.retentionPass(bg)
		}
		d.busySince.Store(0)
	}
}

// working marks the start of a piece of the writer's work (see enqueue).
func (d *DB) working() { d.busySince.Store(time.Now().UnixNano()) }

// writeWaiting commits what the queue holds now, if anything — at most
// about QueueRecords readings, so the compaction or retention work it
// interleaves with still progresses under sustained load.
func (d *DB) writeWaiting(ctx context.Context) {
	budget := int64(d.cfg.QueueRecords)
	for budget > 0 {
		select {
		case b := <-d.queue:
			budget -= int64(len(b.Records)) + 1
			budget -= d.writeFromCounted(ctx, b)
		case <-d.jobs.kick:
			budget -= 1 + d.writeFromCounted(ctx, nil)
		default:
			return
		}
	}
}

// stopWriter stops taking writes (tx and exec commit directly from now
// on), then commits everything still waiting.
func (d *DB) stopWriter(ctx context.Context) error {
	d.jobs.setOpen(false)
	d.writeFrom(ctx, nil)
	err := d.drainQueue(ctx)
	if e := d.syncWAL(); e != nil {
		d.log.Warn("registration writes not synced at the stop", "err", e)
	}
	return err
}

// drainQueue commits everything waiting in the queue.
func (d *DB) drainQueue(ctx context.Context) error {
	for {
		select {
		case b := <-d.queue:
			d.writeFrom(ctx, b)
		default:
			return nil
		}
	}
}

// writeFrom gathers b (nil: none) and whatever else is waiting, up to the
// batch cap, and the waiting writes (group.go), and commits them in one
// transaction.
func (d *DB) writeFrom(ctx context.Context, first *batch) { d.writeFromCounted(ctx, first) }

// writeFromCounted is writeFrom reporting how many readings beyond
// first's it committed.
func (d *DB) writeFromCounted(ctx context.Context, first *batch) int64 {
	var bs []*batch
	var errs []error
	n := 0
	if first != nil {
		bs = append(bs, first)
		n = len(first.Records)
	}
	for n < d.cfg.MaxBatchRecords && (first == nil || first.done == nil) {
		select {
		case b := <-d.queue:
			bs = append(bs, b)
			n += len(b.Records)
			if b.done != nil {
				goto commit
			}
			continue
		default:
		}
		break
	}
commit:
	d.queuedRecords.Add(-int64(n))
	jobs := d.jobs.take()
	jobErrs, err := d.commit(ctx, bs, n, jobs)
	err = d.noteWriteErr(err)
	switch {
	case err == nil:
		finishJobs(jobs, jobErrs, nil)
	case errors.Is(err, ErrDiskFull):
		finishJobs(jobs, nil, err)
	default:
		d.retryJobs(ctx, jobs)
	}
	if errors.Is(err, ErrDiskFull) {
		// Retrying batch by batch would only fail again. Every batch
		// gets the error, so that no device is acknowledged.
		d.failFull(bs, err)
		errs = make([]error, len(bs))
		for i := range errs {
			errs[i] = err
		}
	} else if err != nil {
		// One bad batch (say, for an endpoint deleted meanwhile) must not
		// take the others down: retry one by one, a few times each.
		d.log.Warn("ingestion commit failed; retrying batch by batch", "err", err, "batches", len(bs))
		err = nil
		errs = make([]error, len(bs))
		for i, b := range bs {
			if b.done != nil {
				continue
			}
			var e error
			for attempt := 0; attempt < 3; attempt++ {
				if _, e = d.commit(ctx, []*batch{b}, len(b.Records), nil); e == nil {
					break
				}
				time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
			}
			if e != nil {
				d.stats.failed.Add(1)
				d.log.Error("ingestion batch dropped", "endpoint", b.Endpoint, "readings", len(b.Records), "err", e)
				err = e
				errs[i] = e
			}
		}
	}
	for _, b := range bs {
		if b.done != nil {
			b.done <- err
		}
	}
	d.acknowledge(bs, errs)
	if first == nil {
		return int64(n)
	}
	return int64(n - len(first.Records))
}

// acknowledge calls the commit callbacks of bs (errs[i] is batch i's
// error, errs nil when all committed) on a goroutine of their own, so
// that sending acknowledgements overlaps the next transaction.
func (d *DB) acknowledge(bs []*batch, errs []error) {
	var fns []func(error)
	var fnErrs []error
	for i, b := range bs {
		if b.then == nil {
			continue
		}
		fns = append(fns, b.then)
		var e error
		if errs != nil {
			e = errs[i]
		}
		fnErrs = append(fnErrs, e)
	}
	if len(fns) == 0 {
		return
	}
	d.acks.Add(1)
	go func() {
		defer d.acks.Done()
		for i, fn := range fns {
			fn(fnErrs[i])
		}
	}()
}

type latestRow struct {
	t int64
	v lwm2m.Value
}

// insertRows is how many readings one multi-row INSERT carries: fewer
// statements, less per-row overhead in the driver.
const insertRows = 64

// SeenEvery bounds how often the writer updates an endpoint's last_seen
// from its data or a Seen: at 10,000 devices a per-batch update would cost
// more than the readings themselves. A last_seen this fresh is not
// written again.
const SeenEvery = 10 * time.Second

// pendingRow is a reading waiting in the transaction's insert buffer.
type pendingRow struct {
	series int64
	p      point
}

// rowInserter buffers readings and writes them with multi-row INSERTs.
type rowInserter struct {
	ctx  context.Context
	tx   *sql.Tx
	ws   writerStmts
	buf  []pendingRow
	args []any
	tail map[int64][]tailPoint
	next *int64 // the next row id (telemetryCache.nextRow)
}

func (r *rowInserter) add(s int64, p point) error {
	r.buf = append(r.buf, pendingRow{s, p})
	if len(r.buf) == insertRows {
		return r.flush()
	}
	return nil
}

func rowArgs(args []any, s int64, p point) []any {
	v := p.v
	var txt, blb any
	switch v.Type() {
	case lwm2m.TypeString, lwm2m.TypeCorelnk:
		txt = v.Str()
	case lwm2m.TypeOpaque:
		b := v.Bytes()
		if b == nil {
			b = []byte{}
		}
		blb = b
	}
	return append(args, s, p.t, int(v.Type()), int64(valueBits(v)), txt, blb)
}

// flush writes the buffer in INSERTs of power-of-two sizes (stmts.go),
// with row ids the writer gives: they only grow, whatever was deleted
// (watermark.go). A rolled-back transaction leaves a gap.
func (r *rowInserter) flush() error {
	for rest := r.buf; len(rest) > 0; {
		size, log := chunk(len(rest))
		st, err := r.ws.rows(r.ctx, r.tx, insertValue, log)
		if err != nil {
			return err
		}
		first := *r.next
		*r.next += int64(size)
		r.args = r.args[:0]
		for i, x := range rest[:size] {
			r.args = rowArgs(append(r.args, first+int64(i)), x.series, x.p)
		}
		if _, err := st.ExecContext(r.ctx, r.args...); err != nil {
			return err
		}
		for i, x := range rest[:size] {
			r.tail[x.series] = append(r.tail[x.series], tailPoint{row: first + int64(i), point: x.p})
		}
		rest = rest[size:]
	}
	r.buf = r.buf[:0]
	return nil
}

// bulk buffers rows for one table and writes them with multi-row INSERTs
// of power-of-two sizes, insertRows at most (stmts.go).
type bulk struct {
	ctx  context.Context
	tx   *sql.Tx
	ws   writerStmts
	head string // one of bulkHeads
	cols int
	args []any
	n    int
	// first is flushed before b: rows of b reference rows of first.
	first *bulk
}

func (b *bulk) add(vals ...any) error {
	b.args = append(b.args, vals...)
	b.n++
	if b.n == insertRows {
		return b.flush()
	}
	return nil
}

func (b *bulk) flush() error {
	if b.first != nil {
		if err := b.first.flush(); err != nil {
			return err
		}
	}
	args := b.args
	for b.n > 0 {
		size, log := chunk(b.n)
		st, err := b.ws.rows(b.ctx, b.tx, b.head, log)
		if err != nil {
			return err
		}
		if _, err := st.ExecContext(b.ctx, args[:size*b.cols]...); err != nil {
			return err
		}
		args = args[size*b.cols:]
		b.n -= size
	}
	b.args = b.args[:0]
	return nil
}

// commit writes the batches and then runs the jobs (group.go) in one
// transaction, and returns the jobs' own errors: endpoint and series rows
// when new, one appended "resource" row per reading (sequential pages:
// INTEGER PRIMARY KEY, no secondary index), the events and their links,
// and last_seen for endpoints not updated within SeenEvery. The latest
// value per series is kept in memory and written by the compactor.
func (d *DB) commit(ctx context.Context, bs []*batch, n int, jobs []*writeJob) ([]error, error) {
	var jobErrs []error
	err := d.commitBatches(ctx, bs, n, jobs, &jobErrs)
	return jobErrs, err
}

func (d *DB) commitBatches(ctx context.Context, bs []*batch, n int, jobs []*writeJob, jobErrs *[]error) error {
	work := len(jobs) > 0
	for _, b := range bs {
		work = work || b.done == nil && (len(b.Records) > 0 || b.Event != "" || b.Seen && d.seenDue(b))
	}
	if !work {
		d.settleSeen(bs)
		return nil
	}
	start := time.Now()
	newEps := map[string]int64{}
	newSeries := map[seriesKey]seriesInfo{}
	latest := map[int64]latestRow{}
	lastSeen := map[int64]int64{}
	var notes []Committed
	var stamped map[*batch][]lwm2m.Record // stale readings as stored, for subscribers

	lazy := d.lazyTx(bs, jobs)
	tx, end, err := d.beginWrite(ctx, lazy)
	if err != nil {
		return err
	}
	defer end()
	defer tx.Rollback()
	ins := &rowInserter{ctx: ctx, tx: tx, ws: d.wst, tail: map[int64][]tailPoint{}, next: &d.tel.nextRow}
	// Events get explicit ids (the writer is the only one inserting
	// them) so that they and their links go in multi-row INSERTs.
	events := &bulk{ctx: ctx, tx: tx, ws: d.wst, head: insertEvent, cols: bulkHeads[insertEvent]}
	links := &bulk{ctx: ctx, tx: tx, ws: d.wst, head: insertLink, cols: bulkHeads[insertLink], first: events}
	var lastEvent int64 = -1
	follows, followRecs := 0, 0 // the jobs' follow-up batches, and their readings
	write := func(b *batch) error {
		if b.done != nil || len(b.Records) == 0 && b.Event == "" && !b.Seen {
			return nil
		}
		if b.Seen {
			// Only last_seen, and only of an endpoint the store has.
			if ep, ok := d.tel.endpointID(b.Endpoint); ok {
				lastSeen[ep] = max(lastSeen[ep], b.received().UnixMilli())
			}
			if d.subs.any() {
				notes = append(notes, b.seenNote())
			}
			return nil
		}
		ep, ok := newEps[b.Endpoint]
		if !ok {
			ep, ok = d.tel.endpointID(b.Endpoint)
		}
		if !ok {
			if _, err := tx.ExecContext(ctx, `INSERT INTO endpoint(name, created) VALUES (?, ?) ON CONFLICT(name) DO NOTHING`,
				b.Endpoint, d.ms(d.now())); err != nil {
				return err
			}
			if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, b.Endpoint).Scan(&ep); err != nil {
				return err
			}
			newEps[b.Endpoint] = ep
		}
		recv := b.received()
		recvMS := recv.UnixMilli()
		if recvMS > lastSeen[ep] {
			lastSeen[ep] = recvMS
		}
		var evID int64
		if b.Event != "" {
			if lastEvent < 0 {
				q, err := d.wst.in(ctx, tx, queryMaxEvent)
				if err != nil {
					return err
				}
				if err := q.QueryRowContext(ctx).Scan(&lastEvent); err != nil {
					return err
				}
			}
			lastEvent++
			evID = lastEvent
			if err := events.add(evID, ep, recvMS, b.Event, b.EventDetail); err != nil {
				return err
			}
		}
		for _, r := range b.Records {
			k := seriesKey{ep, r.Path}
			si, ok := newSeries[k]
			if !ok {
				si, ok = d.tel.seriesOf(k)
			}
			if !ok {
				typ := r.Value.Type()
				if d.reg != nil {
					if rm, ok := d.reg.Resource(r.Path.ObjectID(), r.Path.ResourceID()); ok && rm.Type != lwm2m.TypeNone {
						typ = rm.Type
					}
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO series(endpoint_id, path, object_id, resource_id, type) VALUES (?, ?, ?, ?, ?)
					ON CONFLICT(endpoint_id, path) DO NOTHING`, ep, r.Path.String(), r.Path.ObjectID(), r.Path.ResourceID(), int(typ)); err != nil {
					return err
				}
				var t int
				if err := tx.QueryRowContext(ctx, `SELECT id, type FROM series WHERE endpoint_id = ? AND path = ?`, ep, r.Path.String()).Scan(&si.id, &t); err != nil {
					return err
				}
				si.typ = lwm2m.DataType(t)
				newSeries[k] = si
			}
			t := recvMS
			if !r.Time.IsZero() {
				t = r.Time.UnixMilli()
			} else if b.Stale {
				if t, err = d.staleTime(ctx, tx, si.id, latest, t); err != nil {
					return err
				}
			}
			if b.Stale {
				if stamped == nil {
					stamped = map[*batch][]lwm2m.Record{}
				}
				stamped[b] = append(stamped[b], lwm2m.Record{Path: r.Path, Value: r.Value, Time: time.UnixMilli(t).UTC()})
			}
			if err := ins.add(si.id, point{t, r.Value}); err != nil {
				return err
			}
			if l, ok := latest[si.id]; !ok || t >= l.t {
				latest[si.id] = latestRow{t, r.Value}
			}
			if evID != 0 {
				if err := links.add(evID, si.id, t, r.Value.Text()); err != nil {
					return err
				}
			}
		}
		if d.subs.any() {
			recs := b.Records
			if st, ok := stamped[b]; ok {
				recs = st // with the times they were stored at
			}
			notes = append(notes, Committed{Endpoint: b.Endpoint, Received: recv, Records: recs, EventID: evID, Event: b.Event})
		}
		return nil
	}
	flush := func() error {
		if err := ins.flush(); err != nil {
			return err
		}
		return links.flush() // events first: links reference them
	}
	for _, b := range bs {
		if err := write(b); err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if len(jobs) > 0 {
		if *jobErrs, err = d.runJobs(ctx, tx, jobs); err != nil {
			return err
		}
		// What a job asked to have written with it (a Register's event),
		// for the jobs that succeeded: in this transaction, after them.
		for i, j := range jobs {
			if j.follow == nil || (*jobErrs)[i] != nil {
				continue
			}
			follows++
			followRecs += len(j.follow.Records)
			if err := write(j.follow); err != nil {
				return err
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	var seenUpd map[int64]int64
	for ep, t := range lastSeen {
		if d.tel.seenStale(ep, t) {
			if seenUpd == nil {
				seenUpd = map[int64]int64{}
			}
			seenUpd[ep] = t
		}
	}
	if len(seenUpd) > 0 {
		seen, err := d.wst.in(ctx, tx, updateLastSeen)
		if err != nil {
			return err
		}
		for ep, t := range seenUpd {
			if _, err := seen.ExecContext(ctx, t, ep, t); err != nil {
				return err
			}
		}
	}
	// Commit and publish to the tail atomically for readers (see
	// telemetryCache): a query never misses a committed reading.
	d.tel.view.Lock()
	if err := tx.Commit(); err != nil {
		d.tel.view.Unlock()
		return err
	}
	d.committed(lazy)
	d.tel.appendTailLocked(ins.tail)
	d.tel.mergeLatestLocked(latest)
	d.tel.view.Unlock()
	d.tel.remember(newEps, newSeries)
	for ep, t := range seenUpd {
		d.tel.seenWritten[ep] = t
	}
	d.rawRows.Add(int64(n + followRecs))

	lat := time.Since(start)
	st := &d.stats
	var nb uint64
	now := time.Now()
	for _, b := range bs {
		if b.done == nil {
			nb++
			if w := int64(now.Sub(b.queued)); w > st.maxAck.Load() {
				st.maxAck.Store(w)
			}
		}
	}
	// A follow-up batch counts as accepted and committed at once, as a
	// queued one would have been, so that the counters stay balanced.
	st.accepted.Add(uint64(follows))
	st.acceptedRecords.Add(uint64(followRecs))
	st.committed.Add(nb + uint64(follows))
	st.committedRecords.Add(uint64(n + followRecs))
	st.transactions.Add(1)
	for {
		m := st.maxBatch.Load()
		if uint64(n) <= m || st.maxBatch.CompareAndSwap(m, uint64(n)) {
			break
		}
	}
	st.lastCommit.Store(int64(lat))
	st.totalCommit.Add(int64(lat))
	for {
		m := st.maxCommit.Load()
		if int64(lat) <= m || st.maxCommit.CompareAndSwap(m, int64(lat)) {
			break
		}
	}
	for _, c := range notes {
		d.subs.publish(c, &st.subDrops)
	}
	return nil
}

// Committed tells subscribers about readings that are now durable.
type Committed struct {
	Endpoint string
	Received time.Time
	Records  []lwm2m.Record
	EventID  int64 // 0 when the batch made no event
	// Event is the event kind, if any; EventUpdated with EventID 0 is a
	// Seen: the device was heard from, nothing was stored.
	Event string
}

type subscribers struct {
	mu     sync.Mutex
	subs   map[int]chan Committed
	next   int
	closed bool
	snap   atomic.Pointer[[]chan Committed]
}

func (s *subscribers) any() bool { return s.count() > 0 }

// count is how many subscriptions are open, from the snapshot that
// every change refreshes under mu.
func (s *subscribers) count() int {
	if p := s.snap.Load(); p != nil {
		return len(*p)
	}
	return 0
}

func (s *subscribers) refresh() {
	l := make([]chan Committed, 0, len(s.subs))
	for _, c := range s.subs {
		l = append(l, c)
	}
	s.snap.Store(&l)
}

func (s *subscribers) publish(c Committed, drops *atomic.Uint64) {
	// Sends are non-blocking; holding mu keeps a concurrent cancel from
	// closing a channel mid-send.
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- c:
		default:
			drops.Add(1)
		}
	}
}

func (s *subscribers) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for id, c := range s.subs {
		close(c)
		delete(s.subs, id)
	}
	s.refresh()
}

// Subscribers returns how many subscriptions are open.
func (d *DB) Subscribers() int { return d.subs.count() }

// Subscribe returns a channel that receives every committed batch, and a
// function that ends the subscription. A subscriber that falls more than
// buf behind misses notifications (counted in Stats.SubscriberDrops)
// rather than slowing the writer. The channel closes on cancel or Close.
func (d *DB) Subscribe(buf int) (<-chan Committed, func()) {
	if buf <= 0 {
		buf = 256
	}
	c := make(chan Committed, buf)
	s := &d.subs
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(c)
		return c, func() {}
	}
	if s.subs == nil {
		s.subs = map[int]chan Committed{}
	}
	id := s.next
	s.next++
	s.subs[id] = c
	s.refresh()
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ch, ok := s.subs[id]; ok {
			delete(s.subs, id)
			close(ch)
			s.refresh()
		}
	}
}
