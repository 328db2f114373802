package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// logRowOverhead approximates what one device_log row costs beyond its
// text (row header, the integer columns, three index entries); retention
// by size counts it with each line (see migration 0005).
const logRowOverhead = 80

// LogLine is one line a device logged.
type LogLine struct {
	ID       int64     `json:"id"`
	Endpoint string    `json:"endpoint"`
	Time     time.Time `json:"t"`
	// Class is the Event Log class (object 20, LogClass 4010): 0 generic,
	// 1 system, 2 security, 3 event, 4 trace, 5 panic, 6 charging.
	Class    int            `json:"class"`
	Severity lwm2m.Severity `json:"severity"`
	Line     string         `json:"line"`
}

// LogQuery selects device log lines, newest (highest id) first.
type LogQuery struct {
	// Endpoint narrows to one device; "" is every device.
	Endpoint string
	// Before pages back: only lines with a smaller id (0: from the newest).
	Before int64
	// After returns only lines with a larger id (live catch-up).
	After int64
	// Since keeps lines whose time is at or after it (zero: any).
	Since time.Time
	// Severity keeps lines at this level or more severe (syslog order);
	// SeverityUnknown keeps every line.
	Severity lwm2m.Severity
	// Class keeps one Event Log class; negative keeps every class.
	Class int
	// Text keeps lines containing it (case-insensitive for ASCII).
	Text string
	// Limit caps the lines returned: 1–1000, default 100.
	Limit int
}

// AddDeviceLog appends lines received from a device at t, synchronously
// and outside the ingestion lane (tests, imports); ErrNotFound when the
// endpoint is unknown. Devices' logs go through IngestLogs.
func (d *DB) AddDeviceLog(ctx context.Context, endpoint string, t time.Time, lines ...string) error {
	es := make([]LogEntry, len(lines))
	for i, l := range lines {
		es[i] = LogEntry{Time: t, Severity: lwm2m.ParseSeverity(l), Line: l}
	}
	_, err := d.commitLogs(ctx, []*logBatch{{LogBatch: LogBatch{Endpoint: endpoint, Received: t, Lines: es}}})
	return wrap(err, "device log of %q", endpoint)
}

// DeviceLogs returns up to limit lines of an endpoint older than beforeID
// (0: newest), newest first.
func (d *DB) DeviceLogs(ctx context.Context, endpoint string, beforeID int64, limit int) ([]LogLine, error) {
	if _, err := d.endpointRowID(ctx, endpoint); err != nil {
		return nil, err
	}
	return d.QueryLogs(ctx, LogQuery{Endpoint: endpoint, Before: beforeID, Limit: limit, Severity: lwm2m.SeverityUnknown, Class: -1})
}

func (d *DB) endpointRowID(ctx context.Context, endpoint string) (int64, error) {
	var ep int64
	err := d.r.QueryRowContext(ctx, `SELECT id FROM endpoint WHERE name = ?`, endpoint).Scan(&ep)
	return ep, wrap(err, "device log of %q", endpoint)
}

// QueryLogs returns the lines q selects, newest first. An unknown
// q.Endpoint wraps ErrNotFound.
func (d *DB) QueryLogs(ctx context.Context, q LogQuery) ([]LogLine, error) {
	if q.Limit <= 0 || q.Limit > 1000 {
		q.Limit = 100
	}
	var where []string
	var args []any
	if q.Endpoint != "" {
		ep, err := d.endpointRowID(ctx, q.Endpoint)
		if err != nil {
			return nil, err
		}
		where, args = append(where, "l.endpoint_id = ?"), append(args, ep)
	}
	if q.Before > 0 {
		where, args = append(where, "l.id < ?"), append(args, q.Before)
	}
	if q.After > 0 {
		where, args = append(where, "l.id > ?"), append(args, q.After)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "l.t >= ?"), append(args, q.Since.UnixMilli())
	}
	if q.Severity >= 0 {
		where, args = append(where, "l.severity <= ?"), append(args, int(q.Severity))
	}
	if q.Class >= 0 {
		where, args = append(where, "l.class = ?"), append(args, q.Class)
	}
	if q.Text != "" {
		where, args = append(where, `l.line LIKE ? ESCAPE '\'`), append(args, "%"+likeEscape(q.Text)+"%")
	}
	sqlq := `SELECT l.id, e.name, l.t, l.class, l.severity, l.line FROM device_log l JOIN endpoint e ON e.id = l.endpoint_id`
	if len(where) > 0 {
		sqlq += " WHERE " + strings.Join(where, " AND ")
	}
	sqlq += " ORDER BY l.id DESC LIMIT ?"
	args = append(args, q.Limit)
	rows, err := d.r.QueryContext(ctx, sqlq, args...)
	if err != nil {
		return nil, wrap(err, "device logs")
	}
	defer rows.Close()
	out := []LogLine{}
	for rows.Next() {
		var l LogLine
		var t int64
		var sev *int64
		if err := rows.Scan(&l.ID, &l.Endpoint, &t, &l.Class, &sev, &l.Line); err != nil {
			return nil, fmt.Errorf("store: device logs: %w", err)
		}
		l.Time = fromMS(t)
		l.Severity = lwm2m.SeverityUnknown
		if sev != nil {
			l.Severity = lwm2m.Severity(*sev)
		}
		out = append(out, l)
	}
	return out, wrap(rows.Err(), "device logs")
}

// likeEscape makes s match literally in a LIKE pattern with ESCAPE '\'.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// LogUsage is what the stored device logs take: lines and bytes as
// retention by size counts them.
type LogUsage struct {
	Lines int64
	Bytes int64
}

// LogUsage reads the running totals of device_log.
func (d *DB) LogUsage(ctx context.Context) (LogUsage, error) {
	var u LogUsage
	err := d.r.QueryRowContext(ctx, `SELECT lines, bytes FROM device_log_size WHERE id = 1`).Scan(&u.Lines, &u.Bytes)
	return u, wrap(err, "device log usage")
}
