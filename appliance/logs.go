package appliance

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// Device logs (issue 12): LogData (20/x/4014) and LogDataIncremental
// (20/x/4016) values that arrive by Observe, Read or Send are taken out of
// the telemetry stream, decoded by LogDataFormat (4015), classed by
// LogClass (4010) and handed to the store's log lane.

// Limits of one LogData value.
const (
	// maxLogRecord is the most of one LogData value kept: a larger
	// notification or read is cut to it (the lines kept say so), a larger
	// Send is refused with 4.13.
	maxLogRecord = 64 << 10
	// maxLogLines bounds the lines one value becomes.
	maxLogLines = 2000
)

// errLogTooLarge refuses a Send whose LogData exceeds maxLogRecord; it
// wraps server.ErrTooLarge so the device gets 4.13.
var errLogTooLarge = fmt.Errorf("%w: LogData larger than %d bytes; send it in parts", server.ErrTooLarge, maxLogRecord)

// logCollector decodes and stores device logs. It remembers, per endpoint
// and Event Log instance, the class and format last seen and a digest of
// the last LogData, so that a collection that only grew (a device
// answering every read and notification with all it collected since
// LogStart) is stored once, not again with each notification.
type logCollector struct {
	db  *store.DB
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	state  map[logKey]*logState
	seeded map[string]bool // endpoints whose class and format were read from the store

	cut, tooLarge, refused, hexLines atomic.Uint64
}

type logKey struct {
	ep   string
	inst uint16
}

type logState struct {
	class   int
	format  int64
	prevLen int
	prevSum [sha256.Size]byte
}

func newLogCollector(db *store.DB, log *slog.Logger) *logCollector {
	return &logCollector{db: db, log: log, now: nowUTC, state: map[logKey]*logState{}, seeded: map[string]bool{}}
}

// logStats are the collector's counters for /metrics.
type logStats struct{ Cut, TooLarge, Refused, HexLines uint64 }

func (c *logCollector) stats() logStats {
	return logStats{Cut: c.cut.Load(), TooLarge: c.tooLarge.Load(), Refused: c.refused.Load(), HexLines: c.hexLines.Load()}
}

// hasLogData reports whether recs carry LogData.
func hasLogData(recs []lwm2m.Record) bool {
	for _, r := range recs {
		if lwm2m.IsLogData(r.Path) {
			return true
		}
	}
	return false
}

// take stores the LogData among recs and returns the other records for
// telemetry. pushed marks a Send: oversized LogData is refused
// (errLogTooLarge, 4.13) rather than cut, since the device is told and
// can send less. A full log queue wraps store.ErrQueueFull (5.03).
func (c *logCollector) take(ep string, recs []lwm2m.Record, pushed bool) ([]lwm2m.Record, error) {
	rest, _, err := c.takeThen(ep, recs, pushed, nil)
	return rest, err
}

// takeThen is take that, given then, calls it once the lines are
// committed; queued says whether it will (false: no lines, or an error).
func (c *logCollector) takeThen(ep string, recs []lwm2m.Record, pushed bool, then func(error)) (rest []lwm2m.Record, queued bool, err error) {
	if c == nil || !hasLogData(recs) {
		c.note(ep, recs)
		return recs, false, nil
	}
	if pushed {
		for _, r := range recs {
			if lwm2m.IsLogData(r.Path) && len(r.Value.Bytes()) > maxLogRecord {
				c.tooLarge.Add(1)
				return nil, false, fmt.Errorf("LogData %s of %d bytes: %w", r.Path, len(r.Value.Bytes()), errLogTooLarge)
			}
		}
	}
	c.seed(ep)
	c.note(ep, recs)
	received := c.now()
	rest = make([]lwm2m.Record, 0, len(recs))
	var lines []store.LogEntry
	for _, r := range recs {
		if !lwm2m.IsLogData(r.Path) {
			rest = append(rest, r)
			continue
		}
		lines = append(lines, c.decode(ep, r)...)
	}
	if len(lines) > maxLogLines {
		// One payload is one batch, accepted or refused whole (so a
		// device told 5.03 resends nothing twice), within the store's
		// per-device share.
		c.cut.Add(1)
		n := len(lines) - (maxLogLines - 1)
		lines = append(lines[:maxLogLines-1], store.LogEntry{Severity: lwm2m.SeverityWarning,
			Line: fmt.Sprintf("[flownexus] %d more lines of this payload were cut (limit %d lines)", n, maxLogLines)})
	}
	if len(lines) == 0 {
		return rest, false, nil
	}
	b := store.LogBatch{Endpoint: ep, Received: received, Lines: lines}
	if then != nil {
		err = c.db.IngestLogsThen(b, then)
	} else {
		err = c.db.IngestLogs(b)
	}
	if err != nil {
		c.refused.Add(1)
		// Not stored: the next value is taken whole, not as what grew.
		for _, r := range recs {
			if lwm2m.IsLogData(r.Path) {
				c.restart(ep, r.Path.InstanceID())
			}
		}
		return rest, false, err
	}
	return rest, then != nil, nil
}

// seed recalls, once per endpoint and run, the LogClass and LogDataFormat
// last stored as telemetry: after a restart that restored the device's
// registration and observations, its lines keep their class.
func (c *logCollector) seed(ep string) {
	c.mu.Lock()
	done := c.seeded[ep]
	c.seeded[ep] = true
	c.mu.Unlock()
	if done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	latest, err := c.db.Latest(ctx, ep)
	if err != nil {
		return
	}
	var recs []lwm2m.Record
	for _, r := range latest {
		recs = append(recs, lwm2m.Record{Path: r.Path, Value: r.Value})
	}
	c.note(ep, recs)
}

// note remembers the class and format a payload carries.
func (c *logCollector) note(ep string, recs []lwm2m.Record) {
	if c == nil {
		return
	}
	for _, r := range recs {
		if r.Path.Len() < 3 || r.Path.ObjectID() != lwm2m.EventLogObject {
			continue
		}
		n, ok := r.Value.Number()
		if !ok {
			continue
		}
		switch r.Path.ResourceID() {
		case lwm2m.LogClassID:
			c.with(ep, r.Path.InstanceID(), func(s *logState) { s.class = int(n) })
		case lwm2m.LogDataFormatID:
			c.with(ep, r.Path.InstanceID(), func(s *logState) { s.format = int64(n) })
		}
	}
}

func (c *logCollector) with(ep string, inst uint16, f func(*logState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := logKey{ep, inst}
	s := c.state[k]
	if s == nil {
		s = &logState{}
		c.state[k] = s
	}
	f(s)
}

// restart forgets what the last LogData held: LogStart empties the
// device's collection (20.xml, 4011).
func (c *logCollector) restart(ep string, inst uint16) {
	c.with(ep, inst, func(s *logState) { s.prevLen, s.prevSum = 0, [sha256.Size]byte{} })
}

// forget drops a deleted endpoint's state.
func (c *logCollector) forget(ep string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.state {
		if k.ep == ep {
			delete(c.state, k)
		}
	}
	delete(c.seeded, ep)
}

// decode turns one LogData record into lines: only what is new since the
// last value of 4014 when the collection grew, cut to maxLogRecord.
func (c *logCollector) decode(ep string, r lwm2m.Record) []store.LogEntry {
	data := r.Value.Bytes()
	if r.Value.Type() != lwm2m.TypeOpaque {
		data = []byte(r.Value.Text())
	}
	inst := r.Path.InstanceID()
	var class int
	var format int64
	c.with(ep, inst, func(s *logState) {
		class, format = s.class, s.format
		if r.Path.ResourceID() != lwm2m.LogDataID {
			return // LogDataIncremental holds only new data
		}
		if len(data) == 0 {
			return // an emptied collection (or a response that raced the first lines) says nothing
		}
		sum := sha256.Sum256(data)
		grown := s.prevLen > 0 && len(data) >= s.prevLen && sha256.Sum256(data[:s.prevLen]) == s.prevSum
		from := 0
		if grown {
			from = s.prevLen
		}
		s.prevLen, s.prevSum = len(data), sum
		data = data[from:]
	})
	var note []store.LogEntry
	if len(data) > maxLogRecord {
		c.cut.Add(1)
		note = append(note, store.LogEntry{Time: r.Time, Class: class, Severity: lwm2m.SeverityWarning,
			Line: fmt.Sprintf("[flownexus] LogData of %d bytes cut to its first %d", len(data), maxLogRecord)})
		data = data[:maxLogRecord]
	}
	es := lwm2m.DecodeLogData(data, format, r.Path.Truncate(2), r.Time, maxLogLines-len(note))
	out := make([]store.LogEntry, 0, len(es)+len(note))
	for _, e := range es {
		switch {
		case strings.HasPrefix(e.Line, lwm2m.HexPrefix):
			c.hexLines.Add(1)
		case strings.HasPrefix(e.Line, lwm2m.CutPrefix):
			c.cut.Add(1)
		}
		out = append(out, store.LogEntry{Time: plausible(e.Time), Class: class, Severity: e.Severity, Line: e.Line})
	}
	return append(out, note...)
}

// plausible keeps a device time stamp unless it is before 2000 or more
// than a day ahead (a device that never set its clock reports 1970): the
// store then uses the reception time.
func plausible(t time.Time) time.Time {
	if t.IsZero() || t.Year() < 2000 || t.After(time.Now().Add(24*time.Hour)) {
		return time.Time{}
	}
	return t
}

// logArm is what afterRegister does for log collection on one device.
type logArm struct {
	on    bool
	class int
}

// logPolicy decides whether to start log collection on ep: its own
// override, else the global setting.
func (l *lifecycle) logPolicy(ctx context.Context, ep string) logArm {
	p := l.policy()
	arm := logArm{on: p.LogAutoStart, class: p.LogClass}
	dp, err := l.db.DeviceLogPolicy(ctx, ep)
	if err != nil {
		l.log.Info("device log policy not read", "endpoint", ep, "err", err)
		return arm
	}
	switch dp.AutoStart {
	case "on":
		arm = logArm{on: true, class: dp.Class}
	case "off":
		arm.on = false
	}
	return arm
}

// armLogs starts log collection on every Event Log instance the device
// announced: writes LogClass when one is set, reads LogDataFormat,
// executes LogStart and observes LogData (its first value is stored like
// any other). Run after every Register, so a re-registration re-arms it.
func (l *lifecycle) armLogs(ctx context.Context, r *server.Registration) {
	var insts []uint16
	for _, o := range r.Objects {
		if o.ID == lwm2m.EventLogObject {
			insts = append(insts, o.Instances...)
		}
	}
	// Most devices have no Event Log: they cost no policy lookup.
	if len(insts) == 0 {
		return
	}
	arm := l.logPolicy(ctx, r.Endpoint)
	if !arm.on {
		return
	}
	for _, inst := range insts {
		l.armLogInstance(ctx, r.Endpoint, inst, arm)
	}
}

func (l *lifecycle) armLogInstance(ctx context.Context, ep string, inst uint16, arm logArm) {
	base := lwm2m.NewPath(lwm2m.EventLogObject, inst)
	if arm.class > 0 {
		p := base.Append(lwm2m.LogClassID)
		if err := l.srv.Write(ctx, ep, p, lwm2m.FormatText, []lwm2m.Record{{Path: p, Value: lwm2m.Int(int64(arm.class))}}, true); err != nil {
			l.log.Info("log class not written", "endpoint", ep, "path", p, "err", err)
		}
	}
	// Class and format are kept like other readings (keep notes them for
	// the collector), so that a restart can recall them.
	if recs, err := l.srv.Read(ctx, ep, base.Append(lwm2m.LogDataFormatID), lwm2m.FormatNone); err == nil {
		l.keep(ctx, ep, recs, "")
	} else if !errors.Is(err, server.ErrNotFound) {
		l.log.Info("log data format not read", "endpoint", ep, "err", err)
	}
	if recs, err := l.srv.Read(ctx, ep, base.Append(lwm2m.LogClassID), lwm2m.FormatNone); err == nil {
		l.keep(ctx, ep, recs, "")
	}
	if err := l.srv.Execute(ctx, ep, base.Append(lwm2m.LogStartID), ""); err != nil {
		l.log.Info("LogStart failed", "endpoint", ep, "instance", inst, "err", err)
		return
	}
	l.logs.restart(ep, inst)
	_, recs, err := l.srv.Observe(ctx, ep, base.Append(lwm2m.LogDataID), lwm2m.FormatNone)
	if err != nil {
		l.log.Info("LogData observe failed", "endpoint", ep, "instance", inst, "err", err)
		return
	}
	l.keep(ctx, ep, recs, "")
}

// Defaults of the log settings left at 0.
const (
	defaultLogRetention = 30 * 24 * time.Hour
	defaultLogMaxBytes  = 64 << 20
)

// applyLogSettings puts the Settings page's log retention into effect.
func applyLogSettings(db *store.DB, v webui.Settings) {
	age, size := defaultLogRetention, int64(defaultLogMaxBytes)
	if v.LogRetentionDays > 0 {
		age = time.Duration(v.LogRetentionDays) * 24 * time.Hour
	}
	if v.LogMaxMiB > 0 {
		size = int64(v.LogMaxMiB) << 20
	}
	db.SetLogRetention(age, size)
}

// writeLogMetrics adds the device-log lane's and collector's counters.
func (a *Appliance) writeLogMetrics(m func(name, typ, help string, v any)) {
	st := a.db.LogStats()
	m("flownexus_log_lines_accepted_total", "counter", "Device log lines accepted by the log queue.", st.AcceptedLines)
	m("flownexus_log_lines_committed_total", "counter", "Device log lines committed to the database.", st.CommittedLines)
	m("flownexus_log_batches_refused_total", "counter", "LogData values refused because the log queue (or the device's share of it) was full.", st.RefusedBatches)
	m("flownexus_log_lines_refused_total", "counter", "Device log lines refused because the log queue was full.", st.RefusedLines)
	m("flownexus_log_lines_failed_total", "counter", "Device log lines dropped after the writer failed.", st.FailedLines)
	m("flownexus_log_queue_lines", "gauge", "Device log lines waiting in the log queue.", st.QueueLines)
	m("flownexus_log_queue_capacity_lines", "gauge", "Capacity of the log queue in lines.", st.QueueCap)
	m("flownexus_log_retention_deleted_total", "counter", "Device log lines removed by retention (age and size).", st.Deleted)
	if u, err := a.db.LogUsage(context.Background()); err == nil {
		m("flownexus_log_stored_lines", "gauge", "Device log lines stored.", u.Lines)
		m("flownexus_log_stored_bytes", "gauge", "Bytes of device logs as retention by size counts them.", u.Bytes)
	}
	if a.logs != nil {
		c := a.logs.stats()
		m("flownexus_log_records_cut_total", "counter", "LogData values cut to the per-value limit.", c.Cut)
		m("flownexus_log_records_too_large_total", "counter", "Sends refused with 4.13 because their LogData exceeded the limit.", c.TooLarge)
		m("flownexus_log_hex_lines_total", "counter", "Log lines kept as hex because their bytes were not text or did not decode.", c.HexLines)
	}
}

// withLogConfig sizes the store's device-log lane (tests of a flood use a
// small one).
func withLogConfig(c store.LogConfig) Option { return func(a *Appliance) { a.logCfg = &c } }

// joinStored calls stored once n parts have reported, with the first
// error; after cancel it never calls it (the caller answered already).
type joinStored struct {
	stored    func(error)
	n         atomic.Int32
	mu        sync.Mutex
	err       error
	cancelled atomic.Bool
}

func newJoinStored(stored func(error), n int) *joinStored {
	j := &joinStored{stored: stored}
	j.n.Store(int32(n))
	return j
}

func (j *joinStored) done(err error) {
	j.mu.Lock()
	if err != nil && j.err == nil {
		j.err = err
	}
	first := j.err
	j.mu.Unlock()
	if j.n.Add(-1) == 0 && !j.cancelled.Load() {
		j.stored(first)
	}
}

func (j *joinStored) cancel() { j.cancelled.Store(true) }
