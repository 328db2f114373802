package simulation

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
)

func newTestDevice(t *testing.T) *Device {
	t.Helper()
	cfg := DefaultDeviceConfig()
	cfg.Endpoint = "unit-dev"
	cfg.Server = "coap://127.0.0.1:5683"
	cfg.Seed = 42
	d, err := NewDevice(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func value(t *testing.T, d *Device, p string) lwm2m.Value {
	t.Helper()
	recs, err := d.Client().Tree().Read(lwm2m.MustParsePath(p))
	if err != nil || len(recs) != 1 {
		t.Fatalf("read %s: %v %v", p, recs, err)
	}
	return recs[0].Value
}

// TestDeviceRandomWalk: the temperature stays inside its range and the
// measured min/max follow it; Reset Min and Max brings them to the value.
func TestDeviceRandomWalk(t *testing.T) {
	d := newTestDevice(t)
	start := time.Unix(1_700_000_000, 0)
	seen := map[float64]bool{}
	for i := 0; i < 2000; i++ {
		d.Step(start.Add(time.Duration(i) * time.Second))
		v := value(t, d, "/3303/0/5700").Float()
		if v < d.cfg.TempMin || v > d.cfg.TempMax {
			t.Fatalf("step %d: %v outside %v..%v", i, v, d.cfg.TempMin, d.cfg.TempMax)
		}
		seen[v] = true
	}
	if len(seen) < 50 {
		t.Fatalf("the walk barely moved: %d distinct values", len(seen))
	}
	mn, mx, cur := value(t, d, "/3303/0/5601").Float(), value(t, d, "/3303/0/5602").Float(), d.Temperature()
	if !(mn <= cur && cur <= mx && mn < mx) {
		t.Fatalf("min %v max %v current %v", mn, mx, cur)
	}
	if err := d.Client().Tree().Execute(lwm2m.MustParsePath("/3303/0/5605"), ""); err != nil {
		t.Fatal(err)
	}
	if value(t, d, "/3303/0/5601").Float() != cur || value(t, d, "/3303/0/5602").Float() != cur {
		t.Fatal("reset min/max did not take the current value")
	}
	if b := value(t, d, "/3/0/9").Int(); b < 1 || b > 100 {
		t.Fatalf("battery %d", b)
	}
}

// TestDeviceEventLog: LogStart starts logging (LogStatus bit 0 clear, as
// 20.xml says), each Step's lines replace LogData, LogStop stops it,
// Factory Reset clears it.
func TestDeviceEventLog(t *testing.T) {
	d := newTestDevice(t)
	tree := d.Client().Tree()
	if st := value(t, d, "/20/0/4013").Int(); st&1 != 1 {
		t.Fatalf("log status %d before LogStart, want stopped", st)
	}
	if err := tree.Execute(lwm2m.MustParsePath("/20/0/4011"), ""); err != nil {
		t.Fatal(err)
	}
	if st := value(t, d, "/20/0/4013").Int(); st&1 != 0 {
		t.Fatalf("log status %d, want running", st)
	}
	for i := 0; i < 100; i++ {
		d.Step(time.Unix(int64(1700000000+i), 0))
	}
	data := value(t, d, "/20/0/4014").Bytes()
	lines := lwm2m.DecodeLogData(data, 0, lwm2m.NewPath(20, 0), time.Time{}, 0)
	if len(lines) != 1 || !strings.Contains(lines[0].Line, "step 100 temp=") || d.LogLines() != 100 {
		t.Fatalf("LogData %q (%d lines logged)", data, d.LogLines())
	}
	if err := tree.Execute(lwm2m.MustParsePath("/20/0/4012"), ""); err != nil {
		t.Fatal(err)
	}
	d.Step(time.Unix(1700001000, 0))
	if got := value(t, d, "/20/0/4014").Bytes(); string(got) != string(data) || d.LogLines() != 100 || d.Logging() {
		t.Fatal("logged after LogStop")
	}
	if err := tree.Write(lwm2m.MustParsePath("/3/0/15"), []lwm2m.Record{{Path: lwm2m.MustParsePath("/3/0/15"), Value: lwm2m.String("Asia/Tokyo")}}, true); err != nil {
		t.Fatal(err)
	}
	if err := tree.Execute(lwm2m.MustParsePath("/3/0/5"), ""); err != nil {
		t.Fatal(err)
	}
	if len(value(t, d, "/20/0/4014").Bytes()) != 0 || value(t, d, "/3/0/15").Str() != "Etc/UTC" {
		t.Fatal("factory reset left state behind")
	}
}

// The log shapes: bursts, oversize records, CBOR and binary formats.
func TestDeviceEventLogShapes(t *testing.T) {
	step := func(cfg LogConfig) (*Device, []byte) {
		dc := DefaultDeviceConfig()
		dc.Endpoint, dc.Server, dc.Logs = "shape", "coap://127.0.0.1:1", cfg
		d, err := NewDevice(dc)
		if err != nil {
			t.Fatal(err)
		}
		d.Step(time.Unix(1700000000, 0))
		return d, value(t, d, "/20/0/4014").Bytes()
	}
	_, data := step(LogConfig{Start: true, Chatter: true, BurstEvery: 1, BurstLines: 50})
	if n := len(lwm2m.DecodeLogData(data, 0, lwm2m.Path{}, time.Time{}, 0)); n != 51 {
		t.Fatalf("burst: %d lines", n)
	}
	_, data = step(LogConfig{Start: true, OversizeEvery: 1, OversizeBytes: 100 << 10})
	if len(data) < 100<<10 {
		t.Fatalf("oversize: %d bytes", len(data))
	}
	d, data := step(LogConfig{Start: true, Chatter: true, Format: 3})
	if value(t, d, "/20/0/4015").Int() != 3 {
		t.Fatal("LogDataFormat not 3")
	}
	got := lwm2m.DecodeLogData(data, 3, lwm2m.NewPath(20, 0), time.Time{}, 0)
	if len(got) != 1 || !got[0].Time.Equal(time.Unix(1700000000, 0)) || got[0].Severity == lwm2m.SeverityUnknown {
		t.Fatalf("CBOR: %+v", got)
	}
	_, data = step(LogConfig{Start: true, Chatter: true, Format: 100})
	if got := lwm2m.DecodeLogData(data, 100, lwm2m.NewPath(20, 0), time.Time{}, 0); len(got) != 1 || !strings.HasPrefix(got[0].Line, lwm2m.HexPrefix) {
		t.Fatalf("binary: %+v", got)
	}
	if _, data := step(LogConfig{}); len(data) != 0 {
		t.Fatal("logged without Start")
	}
}

// TestDeviceFirmwareObject: Package URI is writable and readable, Update
// is refused until a package is downloaded, the protocols are listed.
func TestDeviceFirmwareObject(t *testing.T) {
	d := newTestDevice(t)
	tree := d.Client().Tree()
	uri := "coap://127.0.0.1:5683/fw/7"
	if err := tree.Write(PathFirmwareURI, []lwm2m.Record{{Path: PathFirmwareURI, Value: lwm2m.String(uri)}}, true); err != nil {
		t.Fatal(err)
	}
	if got := value(t, d, "/5/0/1").Str(); got != uri {
		t.Fatalf("package URI %q", got)
	}
	if err := tree.Execute(lwm2m.MustParsePath("/5/0/2"), ""); !errors.Is(err, client.ErrMethodNotAllowed) {
		t.Fatalf("update in idle state: %v", err)
	}
	recs, err := tree.Read(lwm2m.MustParsePath("/5/0/8"))
	if err != nil || len(recs) != 4 {
		t.Fatalf("protocol support %v %v", recs, err)
	}
	if err := tree.Write(lwm2m.MustParsePath("/5/0/3"), []lwm2m.Record{{Path: lwm2m.MustParsePath("/5/0/3"), Value: lwm2m.Int(2)}}, true); !errors.Is(err, client.ErrMethodNotAllowed) {
		t.Fatalf("write of read-only State: %v", err)
	}
}
