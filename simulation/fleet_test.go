package simulation

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// TestFleetEndToEnd runs a small fleet against lwm2m/server over loopback
// UDP and drives every device-management and reporting operation through
// the server's API.
func TestFleetEndToEnd(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, rec, 2*time.Second)
	cfg := DefaultConfig()
	cfg.Server = addr
	cfg.Devices = 4
	cfg.QueueShare = 0
	cfg.StartSpread = 200 * time.Millisecond
	cfg.Rate = 100 * time.Millisecond
	cfg.SendEvery = 500 * time.Millisecond
	cfg.Lifetime = 60 * time.Second
	cfg.SourceAddrs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	cfg.CoAP = fastCoAP()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, f.AllRegistered(), "all devices registered")

	ep := f.Devices()[1].Endpoint()
	if ep != "sim-0001" {
		t.Fatalf("endpoint name %q", ep)
	}
	reg, ok := srv.Registration(ep)
	if !ok {
		t.Fatal("server has no registration for " + ep)
	}
	if reg.LwM2MVersion != "1.1" || reg.Lifetime != 60*time.Second || reg.Peer.Addr.Addr() != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("registration %+v", reg)
	}
	bg := context.Background()

	// Read: the Device object's values.
	recs, err := srv.Read(bg, ep, lwm2m.MustParsePath("/3/0"), lwm2m.FormatNone)
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]lwm2m.Value{}
	for _, r := range recs {
		vals[r.Path.String()] = r.Value
	}
	if vals["/3/0/0"].Str() != "FlowNexus Labs" || vals["/3/0/3"].Str() != "1.4.2" || vals["/3/0/13"].Int() < 1_600_000_000 {
		t.Fatalf("device object %v", vals)
	}
	// Write and read back.
	if err := srv.Write(bg, ep, lwm2m.MustParsePath("/3/0/15"), lwm2m.FormatText,
		[]lwm2m.Record{{Path: lwm2m.MustParsePath("/3/0/15"), Value: lwm2m.String("Europe/Berlin")}}, true); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Devices()[1].device.Get(lwm2m.MustParsePath("/3/0/15")); v.Str() != "Europe/Berlin" {
		t.Fatalf("timezone after write: %v", v)
	}
	// Write to a read-only resource is refused with 4.05.
	err = srv.Write(bg, ep, lwm2m.MustParsePath("/3/0/0"), lwm2m.FormatText,
		[]lwm2m.Record{{Path: lwm2m.MustParsePath("/3/0/0"), Value: lwm2m.String("x")}}, true)
	if !errors.Is(err, server.ErrMethodNotAllowed) {
		t.Fatalf("write read-only: %v", err)
	}
	// Discover.
	links, err := srv.Discover(bg, ep, lwm2m.MustParsePath("/3303"))
	if err != nil || !strings.Contains(links, "</3303/0/5700>") {
		t.Fatalf("discover: %q %v", links, err)
	}
	// Write-Attributes then Observe: notifications come as values move.
	attrs, _ := lwm2m.ParseAttributes([]string{"pmin=0", "pmax=30"})
	if err := srv.WriteAttributes(bg, ep, lwm2m.MustParsePath("/3303/0/5700"), attrs); err != nil {
		t.Fatal(err)
	}
	if _, _, err := srv.Observe(bg, ep, lwm2m.MustParsePath("/3303/0/5700"), lwm2m.FormatNone); err != nil {
		t.Fatal(err)
	}
	for got := false; !got; {
		for _, r := range waitFor(t, rec.notes, "temperature notification") {
			got = got || r.Path == PathTemperature
		}
	}
	// Observe-Composite of the accelerometer: one notification carries all axes.
	if _, _, err := srv.ObserveComposite(bg, ep, []lwm2m.Path{PathAccelX, PathAccelY, PathAccelZ}, lwm2m.FormatSenMLCBOR); err != nil {
		t.Fatal(err)
	}
	for got := false; !got; {
		n := waitFor(t, rec.notes, "composite notification")
		got = len(n) == 3 && n[0].Path.ObjectID() == 3313
	}
	// Execute: reset min/max, reboot (which registers again).
	if err := srv.Execute(bg, ep, lwm2m.MustParsePath("/3303/0/5605"), ""); err != nil {
		t.Fatal(err)
	}
	if err := srv.Execute(bg, ep, lwm2m.MustParsePath("/5/0/2"), ""); !errors.Is(err, server.ErrMethodNotAllowed) {
		t.Fatalf("firmware update without a package: %v", err)
	}
	// Create and delete a temperature instance.
	p, err := srv.Create(bg, ep, lwm2m.MustParsePath("/3303"), lwm2m.FormatSenMLCBOR,
		[]lwm2m.Record{{Path: lwm2m.MustParsePath("/3303/7/5700"), Value: lwm2m.Float(3.5)}})
	if err != nil || p != lwm2m.MustParsePath("/3303/7") {
		t.Fatalf("create: %v %v", p, err)
	}
	if err := srv.Delete(bg, ep, p); err != nil {
		t.Fatal(err)
	}
	// Composite read and write.
	recs, err = srv.ReadComposite(bg, ep, []lwm2m.Path{PathTemperature, PathBattery}, lwm2m.FormatSenMLJSON)
	if err != nil || len(recs) != 2 {
		t.Fatalf("read-composite: %v %v", recs, err)
	}
	if err := srv.WriteComposite(bg, ep, lwm2m.FormatSenMLCBOR, []lwm2m.Record{
		{Path: lwm2m.MustParsePath("/3/0/14"), Value: lwm2m.String("+02:00")},
		{Path: lwm2m.MustParsePath("/1/0/3"), Value: lwm2m.Int(120)},
	}); err != nil {
		t.Fatal(err)
	}
	// A Lifetime write reaches the server with an Update.
	if err := srv.Write(bg, ep, lwm2m.MustParsePath("/1/0/1"), lwm2m.FormatText,
		[]lwm2m.Record{{Path: lwm2m.MustParsePath("/1/0/1"), Value: lwm2m.Int(45)}}, true); err != nil {
		t.Fatal(err)
	}
	for {
		if u := waitFor(t, rec.updated, "update with the new lifetime"); u.Endpoint == ep && u.Lifetime == 45*time.Second {
			break
		}
	}
	err = srv.Write(bg, ep, lwm2m.MustParsePath("/1/0/1"), lwm2m.FormatText,
		[]lwm2m.Record{{Path: lwm2m.MustParsePath("/1/0/1"), Value: lwm2m.Int(0)}}, true)
	if !errors.Is(err, server.ErrBadRequest) {
		t.Fatalf("zero lifetime write: %v", err)
	}
	// Send (/dp) arrives with timestamps.
	sent := waitFor(t, rec.sent, "send")
	if len(sent) == 0 || sent[0].Time.IsZero() {
		t.Fatalf("sent records %v", sent)
	}
	// Unknown path: 4.04.
	if _, err := srv.Read(bg, ep, lwm2m.MustParsePath("/3303/9"), lwm2m.FormatNone); !errors.Is(err, server.ErrNotFound) {
		t.Fatalf("read unknown instance: %v", err)
	}
	if err := srv.Execute(bg, ep, lwm2m.MustParsePath("/3/0/4"), ""); err != nil {
		t.Fatal(err)
	}
	for {
		if r := waitFor(t, rec.registered, "re-register after reboot"); r.Endpoint == ep {
			break
		}
	}
	for f.Devices()[1].Client().Stats().Registers < 2 {
		waitFor(t, tickAfter(20*time.Millisecond), "client side of the re-register")
	}
	if f.Devices()[1].Reboots() != 1 {
		t.Fatal("reboot not counted")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	seen := map[string]bool{}
	for len(seen) < cfg.Devices {
		seen[waitFor(t, rec.deregs, "de-registrations")] = true
	}
	s := f.Stats()
	if s.Registered != cfg.Devices || s.Deregistrations < uint64(cfg.Devices) || s.Notifications == 0 || s.Sends == 0 {
		t.Fatalf("fleet stats %+v", s)
	}
}

// TestFleetQueueMode: queue-mode devices register with Q, sleep, and take a
// server request after their next uplink.
func TestFleetQueueMode(t *testing.T) {
	rec := newRecorder()
	// The server's awake window is far shorter than the devices', so by
	// the time a device sleeps the server has long stopped sending to it
	// and holds requests for its next uplink. A held request goes out as
	// soon as the uplink arrives, whatever the server's window; the
	// devices' 2 s window is what its round trip must fit into.
	srv, addr := startServer(t, rec, 200*time.Millisecond)
	cfg := DefaultConfig()
	cfg.Server = addr
	cfg.Devices = 2
	cfg.QueueShare = 1
	cfg.AwakeWindow = 2 * time.Second
	cfg.StartSpread = 0
	cfg.Rate = 0
	// No periodic Update during the test (one every 270 s): the test
	// triggers the uplink itself, once the server holds its request.
	cfg.Lifetime = 300 * time.Second
	cfg.CoAP = fastCoAP()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, f.AllRegistered(), "all devices registered")
	ep := f.Devices()[0].Endpoint()
	dev := f.Devices()[0].Client()
	reg, _ := srv.Registration(ep)
	if !reg.QueueMode {
		t.Fatalf("registration not in queue mode: %+v", reg)
	}
	// Wait until both devices have gone to sleep (each once: nothing
	// else wakes them), so the device is asleep for good until an uplink.
	deadline := time.Now().Add(time.Minute) // a bound against hangs, not a timing
	for f.Stats().SleepPeriods < uint64(cfg.Devices) || !dev.Asleep() {
		if time.Now().After(deadline) {
			t.Fatalf("devices not asleep: %+v", f.Stats())
		}
		waitFor(t, tickAfter(20*time.Millisecond), "sleep")
	}
	// Ask: the server holds the request until the device's next uplink,
	// and then the answer arrives.
	type result struct {
		recs []lwm2m.Record
		err  error
	}
	res := make(chan result, 1)
	rctx, rcancel := context.WithTimeout(context.Background(), time.Minute) // a hang bound
	defer rcancel()
	go func() {
		recs, err := srv.Read(rctx, ep, PathBattery, lwm2m.FormatNone)
		res <- result{recs, err}
	}()
	for srv.Stats().Queued == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the server never held the read for the sleeping device")
		}
		select {
		case r := <-res:
			t.Fatalf("read of a sleeping device returned before it woke: %v %v", r.recs, r.err)
		case <-tickAfter(20 * time.Millisecond):
		}
	}
	dev.TriggerUpdate()
	r := waitFor(t, res, "read of a sleeping device")
	if r.err != nil || len(r.recs) != 1 {
		t.Fatalf("read of a sleeping device: %v %v", r.recs, r.err)
	}
}

func tickAfter(d time.Duration) <-chan time.Time { return time.After(d) }

// TestFleetConfig: invalid configurations are refused, and the fleet is
// deterministic for a seed.
func TestFleetConfig(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Devices = 0 },
		func(c *Config) { c.QueueShare = 1.5 },
		func(c *Config) { c.Server = "" },
		func(c *Config) { c.Lifetime = 0 },
		func(c *Config) { c.TempMin, c.TempMax = 30, 10 },
	} {
		cfg := DefaultConfig()
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
	cfg := DefaultConfig()
	cfg.Devices = 20
	cfg.QueueShare = 0.25
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := New(cfg)
	if a.queueCount() != 5 {
		t.Fatalf("queue-mode devices %d, want 5", a.queueCount())
	}
	for i := range a.devices {
		if a.starts[i] != b.starts[i] || a.queue[i] != b.queue[i] {
			t.Fatal("fleet is not deterministic for a seed")
		}
		for j := 0; j < 5; j++ {
			now := time.Unix(int64(j), 0)
			a.devices[i].Step(now)
			b.devices[i].Step(now)
		}
		if a.devices[i].Temperature() != b.devices[i].Temperature() {
			t.Fatal("device values are not deterministic for a seed")
		}
	}
}

// TestFleetFirmwareFailureShares: failure modes go to about their share of
// the devices, the same devices for the same seed.
func TestFleetFirmwareFailureShares(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Devices = 200
	cfg.FirmwareFailures = map[string]float64{FailIntegrity: 0.2, FailUpdate: 0.1}
	count := func() (map[string]int, []string) {
		f, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		var order []string
		for _, d := range f.Devices() {
			n[d.cfg.FirmwareUpdate.Failure]++
			order = append(order, d.cfg.FirmwareUpdate.Failure)
		}
		return n, order
	}
	n, first := count()
	if n[FailIntegrity] < 20 || n[FailIntegrity] > 60 || n[FailUpdate] < 5 || n[FailUpdate] > 40 || n[FailStorage] != 0 {
		t.Fatalf("failures %v", n)
	}
	if _, again := count(); !slices.Equal(first, again) {
		t.Fatal("the same seed gave other failures")
	}
	cfg.FirmwareFailures = map[string]float64{"meteor": 0.1}
	if _, err := New(cfg); err == nil {
		t.Fatal("unknown failure mode accepted")
	}
}
