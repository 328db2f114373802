package simulation

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// The simulated Event Log (object 20), shaped like Zephyr's
// (CONFIG_LWM2M_EVENT_LOG_OBJ_SUPPORT): one instance; LogStart and LogStop
// set LogStatus bit 0 (0 running, 1 stopped, 20.xml 4013) and LogStart
// empties the collection; LogData holds what was logged since it was last
// delivered, so every notification, read and Send carries new lines only.

// LogConfig shapes what a simulated device logs while logging runs.
type LogConfig struct {
	// Start runs logging from the start, without LogStart.
	Start bool
	// Chatter logs a Zephyr-style line on every Step.
	Chatter bool
	// BurstEvery logs BurstLines lines at once every that many Steps (0:
	// never).
	BurstEvery, BurstLines int
	// OversizeEvery makes every that many Steps one record of
	// OversizeBytes (0: never).
	OversizeEvery, OversizeBytes int
	// Format is LogDataFormat (4015): 0 text; 3 CBOR (SenML CBOR records
	// of the lines, with their times); 100 a vendor binary format (bytes
	// that are not text).
	Format int
}

// DefaultLogConfig logs one line per Step once started.
func DefaultLogConfig() LogConfig { return LogConfig{Chatter: true} }

var eventLogPath = lwm2m.NewPath(objEventLog, 0)

// PathLogData is the LogData resource.
var PathLogData = eventLogPath.Append(4014)

// logStatus is 4013: bit 0 stopped, bit 1 LogData holds valid data.
func logStatus(running, data bool) int64 {
	var s int64
	if !running {
		s |= 1
	}
	if data {
		s |= 2
	}
	return s
}

func (d *Device) setLogging(on bool) error {
	d.mu.Lock()
	d.logging = on
	if on {
		d.logData = nil // LogStart empties the collection (20.xml 4011)
	}
	has := len(d.logData) > 0
	d.mu.Unlock()
	recs := []lwm2m.Record{{Path: eventLogPath.Append(4013), Value: lwm2m.Int(logStatus(on, has))}}
	if on {
		recs = append(recs, lwm2m.Record{Path: PathLogData, Value: lwm2m.Opaque(nil)})
	}
	return d.eventLog.SetValues(recs...)
}

// Logging reports whether the device's log collection runs.
func (d *Device) Logging() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logging
}

// LogLines counts the lines the device has logged.
func (d *Device) LogLines() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logCount
}

var severities = []string{"inf", "inf", "inf", "dbg", "wrn", "inf", "err", "inf"}

// logStep produces this Step's lines (d.mu held) and returns the new
// LogData value, or nil when nothing was logged.
func (d *Device) logStep(now time.Time, t float64) []byte {
	if !d.logging {
		return nil
	}
	c := d.cfg.Logs
	d.steps++
	var lines []string
	up := time.Duration(d.steps) * time.Second
	stamp := func() string {
		return fmt.Sprintf("[%02d:%02d:%02d.%03d,000]", int(up.Hours()), int(up.Minutes())%60, int(up.Seconds())%60, now.Nanosecond()/1e6)
	}
	if c.Chatter {
		sev := severities[d.steps%len(severities)]
		lines = append(lines, fmt.Sprintf("%s <%s> app: step %d temp=%.2f", stamp(), sev, d.steps, t))
	}
	if c.BurstEvery > 0 && d.steps%c.BurstEvery == 0 {
		for i := 0; i < c.BurstLines; i++ {
			lines = append(lines, fmt.Sprintf("%s <dbg> net_lwm2m_engine: burst %d/%d of step %d", stamp(), i+1, c.BurstLines, d.steps))
		}
	}
	if c.OversizeEvery > 0 && d.steps%c.OversizeEvery == 0 && c.OversizeBytes > 0 {
		lines = append(lines, stamp()+" <wrn> app: oversize "+strings.Repeat("x", c.OversizeBytes))
	}
	if len(lines) == 0 {
		return nil
	}
	d.logCount += len(lines)
	var data []byte
	switch c.Format {
	case 3:
		recs := make([]lwm2m.Record, len(lines))
		for i, l := range lines {
			recs[i] = lwm2m.Record{Path: PathLogData, Value: lwm2m.String(l), Time: now}
		}
		data, _ = lwm2m.Encode(lwm2m.FormatSenMLCBOR, lwm2m.Path{}, recs, nil)
	case 100:
		data = []byte{0xff, 0xfe, byte(len(lines)), 0x00}
		for _, l := range lines {
			data = append(data, byte(len(l)))
		}
	default:
		data = []byte(strings.Join(lines, "\n") + "\n")
	}
	d.logData = data
	return data
}

// takeLogForSend reports whether LogData holds lines not yet sent, and
// marks them sent.
func (d *Device) takeLogForSend() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.logSent == d.logCount || len(d.logData) == 0 {
		return false
	}
	d.logSent = d.logCount
	return true
}

// SendLogs pushes the current LogData with Send (/dp, Core §6.4.4): the
// LwM2M 1.1 way for a device to report its log without being observed.
func (d *Device) SendLogs(ctx context.Context) error {
	return d.client.Send(ctx, PathLogData)
}
