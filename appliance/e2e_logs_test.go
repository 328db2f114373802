package appliance

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/client"
	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/store"
)

type apiLog struct {
	ID       int64  `json:"id"`
	Endpoint string `json:"endpoint"`
	T        string `json:"t"`
	Class    int    `json:"class"`
	Severity string `json:"severity"`
	Line     string `json:"line"`
}

func (ta *testAppliance) logs(ep, query string) []apiLog {
	ta.t.Helper()
	var out struct{ Logs []apiLog }
	ta.do("GET", "/api/v1/devices/"+ep+"/logs?limit=1000&"+query, nil, http.StatusOK, &out)
	return out.Logs
}

// metric reads one value from /metrics.
func (ta *testAppliance) metric(name string) float64 {
	ta.t.Helper()
	resp, err := http.Get(ta.url + "/metrics")
	if err != nil {
		ta.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				ta.t.Fatalf("metric %s: %q", name, v)
			}
			return f
		}
	}
	ta.t.Fatalf("metric %s missing", name)
	return 0
}

// waitLogObserved waits until the server observes LogData of ep under a
// registration other than notID.
func (ta *testAppliance) waitLogObserved(ep, notID string) {
	ta.t.Helper()
	eventually(ta.t, "LogData observed", func() bool {
		for _, o := range ta.a.srv.Observations(ep) {
			if o.RegistrationID != notID && len(o.Paths) == 1 && o.Paths[0] == simulation.PathLogData {
				return true
			}
		}
		return false
	})
}

func (ta *testAppliance) enableLogAutoStart(class int) {
	ta.t.Helper()
	ta.do("PUT", "/api/v1/settings", map[string]any{"logAutoStart": true, "logClass": class}, http.StatusOK, nil)
}

// A simulated device's log lines reach the API by Observe (the appliance
// starts collection at registration), LogStop stops them, and a
// re-registration starts collection again.
func TestE2ELogsByObserve(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	ta.enableLogAutoStart(1)
	d, _ := ta.startDevice("log-obs", nil)
	eventually(t, "LogStart executed at registration", d.Logging)
	ta.waitLogObserved("log-obs", "")
	if v, _ := d.Object(20); v != nil {
		if c, _ := v.Get(simulation.PathLogData.Parent().Append(4010)); c.Int() != 1 {
			t.Fatalf("LogClass %d on the device, want the 1 the settings ask for", c.Int())
		}
	}
	for i := 0; i < 5; i++ {
		d.Step(time.Now())
	}
	eventually(t, "5 lines by Observe", func() bool { return len(ta.logs("log-obs", "")) == 5 })
	ls := ta.logs("log-obs", "")
	if !strings.Contains(ls[0].Line, "step 5 temp=") || ls[0].Class != 1 || ls[0].Severity == "" {
		t.Fatalf("newest line %+v", ls[0])
	}
	if got := ta.logs("log-obs", "severity=err"); len(got) != 0 && got[0].Severity != "err" {
		t.Fatalf("severity filter: %+v", got)
	}

	// LogStop through the operations path: the device stops logging and
	// nothing more arrives.
	if op := ta.operation("log-obs", map[string]any{"type": "execute", "path": "20/0/4012"}, 30); op.Status != "confirmed" {
		t.Fatalf("LogStop: %+v", op)
	}
	if d.Logging() {
		t.Fatal("device still logging after LogStop")
	}
	for i := 0; i < 5; i++ {
		d.Step(time.Now())
	}
	// A read after the steps round-trips through the device: anything it
	// had would be stored by now.
	if op := ta.operation("log-obs", map[string]any{"type": "read", "path": "20/0/4014"}, 30); op.Status != "confirmed" {
		t.Fatalf("read LogData: %+v", op)
	}
	if err := ta.a.db.FlushLogs(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(ta.logs("log-obs", "")); n != 5 || d.LogLines() != 5 {
		t.Fatalf("after LogStop: %d lines stored, %d logged; want 5 and 5", n, d.LogLines())
	}

	// A re-registration re-arms collection: LogStart again, new lines flow.
	before := ta.metric("flownexus_registrations_total")
	first, _ := ta.a.srv.Registration("log-obs")
	regID := first.ID
	d.Client().TriggerRegister()
	eventually(t, "re-registration", func() bool { return ta.metric("flownexus_registrations_total") > before })
	eventually(t, "LogStart after re-registration", d.Logging)
	ta.waitLogObserved("log-obs", regID)
	for i := 0; i < 3; i++ {
		d.Step(time.Now())
	}
	eventually(t, "lines after re-registration", func() bool { return len(ta.logs("log-obs", "")) == 8 })
	if ls := ta.logs("log-obs", ""); !strings.Contains(ls[0].Line, "step 8 ") || !strings.Contains(ls[3].Line, "step 5 ") {
		t.Fatalf("after re-registration: %+v", ls[:4])
	}
}

// Send (/dp) payloads carrying LogData are logs, not telemetry; device
// time stamps are kept; non-text bytes are kept as hex; oversize LogData
// is refused with 4.13 when pushed and cut when read; all counted.
func TestE2ELogsBySendAndBadInput(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	ctx := context.Background()
	d, _ := ta.startDevice("log-send", func(c *simulation.DeviceConfig) { c.Logs.Start = true })
	devTime := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d.Step(devTime)
	if err := d.SendLogs(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a line by Send", func() bool { return len(ta.logs("log-send", "")) == 1 })
	if l := ta.logs("log-send", "")[0]; l.T != "2026-03-01T12:00:00Z" && !strings.HasPrefix(l.T, time.Now().UTC().Format("2006-01-02")) {
		t.Fatalf("time %q", l.T)
	}
	var dev struct {
		Device struct {
			Values map[string]any `json:"values"`
		} `json:"device"`
	}
	ta.do("GET", "/api/v1/devices/log-send", nil, http.StatusOK, &dev)
	if _, ok := dev.Device.Values["/20/0/4014"]; ok {
		t.Fatal("LogData stored as telemetry too")
	}

	// Invalid UTF-8 (a vendor binary format): kept as hex.
	bin, _ := ta.startDevice("log-bin", func(c *simulation.DeviceConfig) {
		c.Logs = simulation.LogConfig{Start: true, Chatter: true, Format: 100}
	})
	bin.Step(time.Now())
	if err := bin.SendLogs(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "hex line", func() bool {
		ls := ta.logs("log-bin", "")
		return len(ls) == 1 && strings.HasPrefix(ls[0].Line, "[hex] fffe")
	})

	// 1 MiB of LogData pushed: 4.13 with a reason, nothing stored, counted.
	big, _ := ta.startDevice("log-big", func(c *simulation.DeviceConfig) {
		c.Logs = simulation.LogConfig{Start: true, OversizeEvery: 1, OversizeBytes: 1 << 20}
	})
	big.Step(time.Now())
	err := big.SendLogs(ctx)
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != coap.RequestEntityTooLarge || !strings.Contains(se.Message, "LogData") {
		t.Fatalf("1 MiB Send: %v", err)
	}
	if n := len(ta.logs("log-big", "")); n != 0 {
		t.Fatalf("%d lines stored from a refused Send", n)
	}
	if v := ta.metric("flownexus_log_records_too_large_total"); v != 1 {
		t.Fatalf("too-large counter %v", v)
	}
	// An oversize value read (in CoAP blocks): cut to the limit, the cut
	// said in a line.
	cut, _ := ta.startDevice("log-cut", func(c *simulation.DeviceConfig) {
		c.Logs = simulation.LogConfig{Start: true, OversizeEvery: 1, OversizeBytes: 100 << 10}
	})
	cut.Step(time.Now())
	if op := ta.operation("log-cut", map[string]any{"type": "read", "path": "20/0/4014"}, 120); op.Status != "confirmed" {
		t.Fatalf("read 100 KiB: %+v", op)
	}
	eventually(t, "cut record stored", func() bool {
		ls := ta.logs("log-cut", "q=cut+to+its+first")
		return len(ls) == 1 && ls[0].Severity == "warning"
	})
	if v := ta.metric("flownexus_log_records_cut_total"); v != 1 {
		t.Fatalf("cut counter %v", v)
	}
	var total int
	for _, l := range ta.logs("log-cut", "") {
		total += len(l.Line)
	}
	if total > 64<<10+200 {
		t.Fatalf("%d bytes stored from a cut record", total)
	}
}

// A flood of 10,000 log lines from one device: another device's telemetry
// is all committed meanwhile, and every flood line is either stored or
// refused with 5.03 and counted. (Counts, not timings.)
func TestE2ELogFlood(t *testing.T) {
	cfg := testConfig(t)
	// The production flush interval: telemetry must commit within it (a
	// reading waiting longer gets 5.03) while the flood goes on.
	cfg.Store.FlushInterval = time.Second
	ta := startAppliance(t, cfg, withLogConfig(store.LogConfig{QueueLines: 2500, EndpointShare: 2000}))
	ctx := context.Background()
	flood, _ := ta.startDevice("log-flood", func(c *simulation.DeviceConfig) {
		c.Logs = simulation.LogConfig{Start: true, BurstEvery: 1, BurstLines: 834}
	})
	sensor, _ := ta.startDevice("sensor", nil)
	const sends = 12 // 12 × 834 lines: 10,008
	done := make(chan [2]int)
	go func() {
		ok, refused := 0, 0
		for i := 0; i < sends; i++ {
			flood.Step(time.Now())
			err := flood.SendLogs(ctx)
			var se *client.ServerError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &se) && se.Code == coap.ServiceUnavailable:
				refused++
			default:
				t.Errorf("flood send: %v", err)
			}
		}
		done <- [2]int{ok, refused}
	}()
	const readings = 40
	for i := 0; i < readings; i++ {
		sensor.Step(time.Now().Add(time.Duration(i) * time.Millisecond))
		if err := sensor.Client().Send(ctx, simulation.PathTemperature); err != nil {
			t.Errorf("telemetry Send %d during the flood: %v", i, err)
			break
		}
	}
	res := <-done
	if err := ta.a.db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ta.a.db.FlushLogs(ctx); err != nil {
		t.Fatal(err)
	}
	pts, err := ta.a.db.Readings(ctx, "sensor", simulation.PathTemperature, time.Time{}, time.Now().Add(time.Hour), 10000)
	if err != nil || len(pts) < readings {
		t.Fatalf("sensor telemetry: %d points of %d sent (%v)", len(pts), readings, err)
	}
	stored := len(ta.logs("log-flood", "limit=1000")) // capped at 1000 by the API
	u, err := ta.a.db.LogUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	refusedMetric := ta.metric("flownexus_log_batches_refused_total")
	if int(u.Lines) != res[0]*834 || int(refusedMetric) != res[1] || res[0]+res[1] != sends {
		t.Fatalf("flood: %d Sends stored (%d lines, API %d), %d refused with 5.03, metric %v", res[0], u.Lines, stored, res[1], refusedMetric)
	}
	t.Logf("flood: %d of %d Sends stored, %d refused and counted; %d telemetry points committed", res[0], sends, res[1], len(pts))
}

// The text download of a device's log.
func TestE2ELogDownload(t *testing.T) {
	ta := startAppliance(t, testConfig(t))
	d, _ := ta.startDevice("log-dl", func(c *simulation.DeviceConfig) { c.Logs.Start = true })
	for i := 0; i < 3; i++ {
		d.Step(time.Now())
		if err := d.SendLogs(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "3 lines", func() bool { return len(ta.logs("log-dl", "")) == 3 })
	req, _ := http.NewRequest("GET", ta.url+"/api/v1/devices/log-dl/logs.txt", nil)
	req.Header.Set("Authorization", "Bearer "+ta.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "step 1 ") || !strings.Contains(lines[2], "step 3 ") {
		t.Fatalf("download: %q", b)
	}
}

// After a restart collection goes on — the registration and its LogData
// observation restored, or the device registered again and re-armed — and
// new lines keep their class; the old ones stay.
func TestE2ELogsSurviveRestart(t *testing.T) {
	cfg := testConfig(t)
	ta := startAppliance(t, cfg)
	ta.enableLogAutoStart(3)
	first := ta.a.Addrs().CoAP
	d, _ := ta.startDevice("log-phoenix", func(dc *simulation.DeviceConfig) { dc.Lifetime = time.Hour })
	ta.waitLogObserved("log-phoenix", "")
	d.Step(time.Now())
	eventually(t, "a line before the restart", func() bool { return len(ta.logs("log-phoenix", "")) == 1 })

	ta.shutdown()
	cfg.Listen.CoAP = first
	a2 := startBare(t, cfg)
	eventually(t, "LogData observed after the restart", func() bool {
		for _, o := range a2.srv.Observations("log-phoenix") {
			if len(o.Paths) == 1 && o.Paths[0] == simulation.PathLogData {
				return true
			}
		}
		return false
	})
	d.Step(time.Now())
	eventually(t, "a line after the restart", func() bool {
		ls, err := a2.db.QueryLogs(context.Background(), store.LogQuery{Endpoint: "log-phoenix", Severity: -1, Class: -1})
		return err == nil && len(ls) >= 2 && strings.Contains(ls[0].Line, "step 2 ")
	})
	ls, _ := a2.db.QueryLogs(context.Background(), store.LogQuery{Endpoint: "log-phoenix", Severity: -1, Class: -1})
	if ls[0].Class != 3 || ls[len(ls)-1].Class != 3 || !strings.Contains(ls[len(ls)-1].Line, "step 1 ") {
		t.Fatalf("after the restart: %+v", ls)
	}
}
