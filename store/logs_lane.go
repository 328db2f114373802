package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// Device logs have an ingestion lane of their own: a bounded queue counted
// in lines, a writer that commits at most LogConfig.MaxBatchLines per
// transaction, and retention by age and by size. A log flood therefore
// fills only this queue (IngestLogs refuses, counted) and holds the single
// write connection for one short transaction at a time, so telemetry
// (Ingest/Run) and the web UI's reads are never queued behind it.

// LogConfig configures the device-log lane. Zero fields take the defaults.
type LogConfig struct {
	// QueueLines bounds the lines waiting for the writer; IngestLogs
	// refuses beyond it with ErrQueueFull.
	QueueLines int
	// EndpointShare bounds one endpoint's share of the queue (in lines),
	// so one flooding device cannot shut the others' logs out.
	EndpointShare int
	// MaxBatchLines caps the lines of one transaction.
	MaxBatchLines int
	// Retention keeps lines for this long after reception.
	Retention time.Duration
	// MaxBytes caps the stored logs (line bytes plus a per-row overhead);
	// the oldest lines go first when it is exceeded. 0: no cap.
	MaxBytes int64
	// RetentionInterval is how often retention by age runs; retention by
	// size also runs after every commit that crosses MaxBytes.
	RetentionInterval time.Duration
}

// DefaultLogConfig: 20,000 lines queued (a quarter per device), 250 per
// transaction (a few milliseconds of the write lock), 30 days, 64 MiB.
func DefaultLogConfig() LogConfig {
	return LogConfig{QueueLines: 20000, EndpointShare: 5000, MaxBatchLines: 250,
		Retention: 30 * 24 * time.Hour, MaxBytes: 64 << 20, RetentionInterval: time.Minute}
}

// WithLogConfig sets the device-log lane's configuration.
func WithLogConfig(c LogConfig) Option { return func(d *DB) { d.logs.cfg = c } }

// LogEntry is one line to store.
type LogEntry struct {
	// Time is the device's time for the line; zero takes the reception time.
	Time     time.Time
	Class    int
	Severity lwm2m.Severity
	Line     string
}

// LogBatch is the lines of one LogData value from one endpoint.
type LogBatch struct {
	Endpoint string
	Received time.Time
	Lines    []LogEntry
}

type logBatch struct {
	LogBatch
	done chan error      // Flush marker
	then func(err error) // IngestLogsThen's callback, after the commit
	err  error           // this batch's commit error, for then
}

// LogStats are the lane's counters for /metrics.
type LogStats struct {
	AcceptedLines  uint64
	CommittedLines uint64
	RefusedBatches uint64 // refused with ErrQueueFull (queue or per-device share)
	RefusedLines   uint64
	FailedLines    uint64 // dropped after the writer failed (endpoint deleted meanwhile)
	Transactions   uint64
	Deleted        uint64 // removed by retention (age and size)
	QueueLines     int
	QueueCap       int
	SubscriberDrop uint64
}

type logLane struct {
	cfg       LogConfig
	retention atomic.Int64 // time.Duration
	maxBytes  atomic.Int64

	mu      sync.Mutex
	pending []*logBatch
	lines   int
	perEP   map[string]int
	wake    chan struct{}
	running bool
	done    chan struct{}

	accepted, committed, refused, refusedLines, failed, txs, deleted, subDrops atomic.Uint64

	subMu sync.Mutex
	subs  map[int]chan []LogLine
	next  int
}

// initLogs applies the lane's defaults; Open calls it after the options.
func (d *DB) initLogs() {
	l := &d.logs
	def := DefaultLogConfig()
	if l.cfg.QueueLines <= 0 {
		l.cfg.QueueLines = def.QueueLines
	}
	if l.cfg.EndpointShare <= 0 {
		l.cfg.EndpointShare = max(l.cfg.QueueLines/4, 1)
	}
	if l.cfg.MaxBatchLines <= 0 {
		l.cfg.MaxBatchLines = def.MaxBatchLines
	}
	if l.cfg.Retention <= 0 {
		l.cfg.Retention = def.Retention
	}
	if l.cfg.MaxBytes < 0 {
		l.cfg.MaxBytes = 0
	}
	if l.cfg.RetentionInterval <= 0 {
		l.cfg.RetentionInterval = def.RetentionInterval
	}
	l.retention.Store(int64(l.cfg.Retention))
	l.maxBytes.Store(l.cfg.MaxBytes)
	l.perEP = map[string]int{}
	l.wake = make(chan struct{}, 1)
	l.subs = map[int]chan []LogLine{}
}

// SetLogRetention changes the lane's retention by age and by size (0
// bytes: no size cap) while running; the next pass applies them.
func (d *DB) SetLogRetention(age time.Duration, maxBytes int64) {
	if age > 0 {
		d.logs.retention.Store(int64(age))
	}
	if maxBytes >= 0 {
		d.logs.maxBytes.Store(maxBytes)
	}
}

// LogRetention returns the retention by age and by size in force.
func (d *DB) LogRetention() (time.Duration, int64) {
	return time.Duration(d.logs.retention.Load()), d.logs.maxBytes.Load()
}

// LogStats returns a snapshot of the lane's counters.
func (d *DB) LogStats() LogStats {
	l := &d.logs
	l.mu.Lock()
	q := l.lines
	l.mu.Unlock()
	return LogStats{AcceptedLines: l.accepted.Load(), CommittedLines: l.committed.Load(),
		RefusedBatches: l.refused.Load(), RefusedLines: l.refusedLines.Load(), FailedLines: l.failed.Load(),
		Transactions: l.txs.Load(), Deleted: l.deleted.Load(), QueueLines: q, QueueCap: l.cfg.QueueLines,
		SubscriberDrop: l.subDrops.Load()}
}

// IngestLogs hands lines to the log writer without blocking. Once it
// returns nil they are committed (while RunLogs runs, or by Close). It
// wraps ErrQueueFull when the queue, or the endpoint's share of it, has no
// room (answer 5.03 so the device retries), ErrInvalid for an empty
// endpoint or a batch larger than the queue, and ErrClosed after Close.
func (d *DB) IngestLogs(b LogBatch) error { return d.ingestLogs(b, nil) }

// IngestLogsThen is IngestLogs that calls committed once the lines are
// committed (or dropped, with the error): for acknowledging a device only
// then. committed runs on the log writer and must not block. When
// IngestLogsThen returns an error, committed is never called.
func (d *DB) IngestLogsThen(b LogBatch, committed func(error)) error {
	if committed == nil {
		return fmt.Errorf("store: ingest logs: %w: no commit callback", ErrInvalid)
	}
	if len(b.Lines) == 0 {
		committed(nil)
		return nil
	}
	return d.ingestLogs(b, committed)
}

func (d *DB) ingestLogs(b LogBatch, then func(error)) error {
	if b.Endpoint == "" {
		return fmt.Errorf("store: ingest logs: %w: empty endpoint", ErrInvalid)
	}
	if len(b.Lines) == 0 {
		return nil
	}
	l := &d.logs
	n := len(b.Lines)
	if n > l.cfg.EndpointShare {
		l.refused.Add(1)
		l.refusedLines.Add(uint64(n))
		return fmt.Errorf("store: ingest logs from %q: %w: %d lines in one batch, at most %d", b.Endpoint, ErrInvalid, n, l.cfg.EndpointShare)
	}
	if b.Received.IsZero() {
		b.Received = d.now()
	}
	d.ingestMu.RLock()
	defer d.ingestMu.RUnlock()
	if d.closed.Load() {
		return fmt.Errorf("store: ingest logs from %q: %w", b.Endpoint, ErrClosed)
	}
	l.mu.Lock()
	switch {
	case l.lines+n > l.cfg.QueueLines:
		l.mu.Unlock()
		l.refused.Add(1)
		l.refusedLines.Add(uint64(n))
		return fmt.Errorf("store: ingest logs from %q: %w (%d log lines waiting)", b.Endpoint, ErrQueueFull, l.cfg.QueueLines)
	case l.perEP[b.Endpoint]+n > l.cfg.EndpointShare:
		l.mu.Unlock()
		l.refused.Add(1)
		l.refusedLines.Add(uint64(n))
		return fmt.Errorf("store: ingest logs from %q: %w (the device's share of %d lines is waiting)", b.Endpoint, ErrQueueFull, l.cfg.EndpointShare)
	}
	l.pending = append(l.pending, &logBatch{LogBatch: b, then: then})
	l.lines += n
	l.perEP[b.Endpoint] += n
	l.mu.Unlock()
	l.accepted.Add(uint64(n))
	l.signal()
	return nil
}

func (l *logLane) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// FlushLogs waits until the lines accepted before the call are committed.
// It needs RunLogs to be running.
func (d *DB) FlushLogs(ctx context.Context) error {
	done := make(chan error, 1)
	l := &d.logs
	d.ingestMu.RLock()
	if d.closed.Load() {
		d.ingestMu.RUnlock()
		return fmt.Errorf("store: flush logs: %w", ErrClosed)
	}
	l.mu.Lock()
	l.pending = append(l.pending, &logBatch{done: done})
	l.mu.Unlock()
	d.ingestMu.RUnlock()
	l.signal()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("store: flush logs: %w", ctx.Err())
	}
}

// take removes up to MaxBatchLines lines' worth of batches from the queue
// (at least one batch), stopping after a Flush marker.
func (l *logLane) take() []*logBatch {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) > 0 && len(l.pending[0].Lines) > l.cfg.MaxBatchLines {
		// A batch larger than a transaction goes in parts, so that no
		// log transaction holds the write connection long.
		b := l.pending[0]
		part := &logBatch{LogBatch: LogBatch{Endpoint: b.Endpoint, Received: b.Received, Lines: b.Lines[:l.cfg.MaxBatchLines]}}
		b.Lines = b.Lines[l.cfg.MaxBatchLines:]
		l.lines -= len(part.Lines)
		l.perEP[b.Endpoint] -= len(part.Lines)
		return []*logBatch{part}
	}
	n, i := 0, 0
	for i < len(l.pending) {
		b := l.pending[i]
		if i > 0 && n+len(b.Lines) > l.cfg.MaxBatchLines {
			break
		}
		n += len(b.Lines)
		i++
		if b.done != nil {
			break
		}
	}
	out := make([]*logBatch, i)
	copy(out, l.pending[:i])
	l.pending = append(l.pending[:0], l.pending[i:]...)
	l.lines -= n
	for _, b := range out {
		if b.done == nil {
			if l.perEP[b.Endpoint] -= len(b.Lines); l.perEP[b.Endpoint] <= 0 {
				delete(l.perEP, b.Endpoint)
			}
		}
	}
	return out
}

// RunLogs is the device-log writer: it commits queued lines and applies
// log retention until ctx ends or Close is called, then commits what the
// queue still holds. Only one RunLogs may be active.
func (d *DB) RunLogs(ctx context.Context) error {
	l := &d.logs
	l.mu.Lock()
	if l.running || d.closed.Load() {
		l.mu.Unlock()
		return fmt.Errorf("store: run logs: %w: already running or closed", ErrInvalid)
	}
	l.running = true
	l.done = make(chan struct{})
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.running = false
		close(l.done)
		l.mu.Unlock()
	}()
	tick := time.NewTicker(l.cfg.RetentionInterval)
	defer tick.Stop()
	bg := context.WithoutCancel(ctx)
	for {
		select {
		case <-ctx.Done():
			d.drainLogs(bg)
			return nil
		case <-d.closing:
			d.drainLogs(bg)
			return nil
		case <-l.wake:
			for d.writeLogs(bg) {
			}
		case <-tick.C:
			if _, err := d.ApplyLogRetention(bg); err != nil {
				d.log.Error("log retention failed", "err", err)
			}
		}
	}
}

// writeLogs commits one transaction's worth; it reports whether more waits.
// Telemetry goes first: while readings wait for the ingestion writer, the
// lane stands back so that the writer gets the write connection at once.
func (d *DB) writeLogs(ctx context.Context) bool {
	d.yieldToTelemetry()
	bs := d.logs.take()
	if len(bs) == 0 {
		return false
	}
	d.commitLogBatches(ctx, bs)
	d.logs.mu.Lock()
	more := len(d.logs.pending) > 0
	d.logs.mu.Unlock()
	return more
}

// yieldToTelemetry waits, while readings wait for the ingestion writer,
// until it has committed once (or a quarter of the flush interval passed),
// so that a log flood neither holds telemetry back nor is starved by it.
func (d *DB) yieldToTelemetry() {
	if d.queuedRecords.Load() == 0 || !d.writerRunning() {
		return
	}
	t0 := d.stats.transactions.Load()
	deadline := time.Now().Add(d.cfg.FlushInterval / 4)
	for d.queuedRecords.Load() > 0 && d.stats.transactions.Load() == t0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func (d *DB) writerRunning() bool {
	d.runMu.Lock()
	defer d.runMu.Unlock()
	return d.running
}

func (d *DB) drainLogs(ctx context.Context) {
	for d.writeLogs(ctx) {
	}
}

// commitLogBatches commits bs; when the transaction fails (an endpoint
// deleted meanwhile) it retries batch by batch and counts what it drops.
func (d *DB) commitLogBatches(ctx context.Context, bs []*logBatch) {
	_, err := d.commitLogs(ctx, bs)
	if err != nil {
		d.log.Warn("log commit failed; retrying batch by batch", "err", err, "batches", len(bs))
		err = nil
		for _, b := range bs {
			if b.done != nil || len(b.Lines) == 0 {
				continue
			}
			if _, e := d.commitLogs(ctx, []*logBatch{b}); e != nil {
				d.logs.failed.Add(uint64(len(b.Lines)))
				d.log.Info("device log lines dropped", "endpoint", b.Endpoint, "lines", len(b.Lines), "err", e)
				err = e
				b.err = e
			}
		}
	}
	// Size retention first, so that a flushed caller sees the cap kept.
	if d.logs.maxBytes.Load() > 0 {
		if _, err := d.logSizeRetention(ctx); err != nil {
			d.log.Error("log size retention failed", "err", err)
		}
	}
	for _, b := range bs {
		if b.done != nil {
			b.done <- err
		}
		if b.then != nil {
			b.then(b.err)
		}
	}
}

// commitLogs writes the batches in one transaction and tells subscribers.
// An unknown endpoint wraps ErrNotFound.
func (d *DB) commitLogs(ctx context.Context, bs []*logBatch) (int, error) {
	n := 0
	for _, b := range bs {
		n += len(b.Lines)
	}
	if n == 0 {
		return 0, nil
	}
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	ins := &bulk{ctx: ctx, tx: tx, ws: d.wst, head: insertLog, cols: bulkHeads[insertLog]}
	eps := map[string]int64{}
	var bytes int64
	var pub []LogLine
	subs := d.logs.hasSubs()
	for _, b := range bs {
		if len(b.Lines) == 0 {
			continue
		}
		ep, ok := eps[b.Endpoint]
		if !ok {
			if err := tx.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, b.Endpoint).Scan(&ep); err != nil {
				return 0, wrap(err, "device log of %q", b.Endpoint)
			}
			eps[b.Endpoint] = ep
		}
		recv := b.Received.UnixMilli()
		for _, e := range b.Lines {
			t := recv
			if !e.Time.IsZero() {
				t = e.Time.UnixMilli()
			}
			var sev any
			if e.Severity >= 0 {
				sev = int(e.Severity)
			}
			line := strings.ToValidUTF8(e.Line, "\uFFFD")
			bytes += int64(len(line)) + logRowOverhead
			if err := ins.add(ep, t, recv, e.Class, sev, line); err != nil {
				return 0, err
			}
			if subs {
				pub = append(pub, LogLine{Endpoint: b.Endpoint, Time: fromMS(t), Class: e.Class, Severity: e.Severity, Line: line})
			}
		}
	}
	if err := ins.flush(); err != nil {
		return 0, err
	}
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT MAX(id) FROM device_log`).Scan(&last); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE device_log_size SET lines = lines + ?, bytes = bytes + ? WHERE id = 1`, n, bytes); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	d.logs.committed.Add(uint64(n))
	d.logs.txs.Add(1)
	if len(pub) > 0 {
		// Ids are consecutive up to last: the lane held the only write
		// connection while it inserted.
		for i := range pub {
			pub[i].ID = last - int64(len(pub)) + 1 + int64(i)
		}
		d.logs.publish(pub)
	}
	return n, nil
}

func (l *logLane) hasSubs() bool {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	return len(l.subs) > 0
}

// publish hands committed lines to subscribers, one slice per endpoint and
// transaction, without blocking.
func (l *logLane) publish(lines []LogLine) {
	byEP := map[string][]LogLine{}
	var order []string
	for _, x := range lines {
		if _, ok := byEP[x.Endpoint]; !ok {
			order = append(order, x.Endpoint)
		}
		byEP[x.Endpoint] = append(byEP[x.Endpoint], x)
	}
	l.subMu.Lock()
	defer l.subMu.Unlock()
	for _, ep := range order {
		for _, ch := range l.subs {
			select {
			case ch <- byEP[ep]:
			default:
				l.subDrops.Add(1)
			}
		}
	}
}

// SubscribeLogs returns a channel that receives committed log lines (one
// slice per endpoint and transaction, oldest first) and a function that
// ends the subscription. A subscriber more than buf slices behind misses
// some (counted in LogStats.SubscriberDrop) rather than slowing the writer.
func (d *DB) SubscribeLogs(buf int) (<-chan []LogLine, func()) {
	if buf <= 0 {
		buf = 64
	}
	l := &d.logs
	c := make(chan []LogLine, buf)
	l.subMu.Lock()
	id := l.next
	l.next++
	l.subs[id] = c
	l.subMu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			l.subMu.Lock()
			delete(l.subs, id)
			l.subMu.Unlock()
		})
	}
}

// closeLogs stops the lane: RunLogs drains the queue when it sees closing;
// without it Close commits what was accepted.
func (d *DB) closeLogs() {
	l := &d.logs
	l.mu.Lock()
	running, done := l.running, l.done
	l.mu.Unlock()
	if running {
		<-done
		return
	}
	d.drainLogs(context.Background())
}
